"""3D Slicer module "MR Imputation": synthesize missing MRI contrasts with MM-GAN.

Slicer glue only; the work is in MRImputationLib (imported inside functions, so loading the module
costs nothing): the panel in slicer/imputation_panel.py, the logic in slicer/imputation_logic.py (each
job a child process running `mrimpute`, followed by slicer/job.py), the MRML bridge in slicer/bridge.py.
"""

import os
from typing import Annotated

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)


class MRImputation(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MR Imputation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Image Synthesis")]
        self.parent.dependencies = []
        self.parent.contributors = ["MRImputation contributors"]
        self.parent.helpText = _(
            "Synthesizes the MRI contrasts a patient is missing (e.g. PD from T1 and T2) with one MM-GAN model for "
            "every combination of given contrasts. Pick a model, the volumes you have (leave the missing ones empty), "
            "and click <b>Impute missing modalities</b>. Results are new volumes named '&lt;contrast&gt; (synthetic)': "
            "research use only, never a replacement for an acquisition. Under <b>Inspect</b>, compare a synthetic "
            "volume with a real one (error map and metrics).")
        self.parent.acknowledgementText = _(
            "MM-GAN: Sharma and Hamarneh, IEEE TMI 2020. IXI data: brain-development.org (CC BY-SA 3.0). "
            "Built on the Slicer scripted-module template (Kitware, Isomics, PerkLab).")


@parameterNodeWrapper
class MRImputationParameterNode:
    """The panel's choices, saved with the scene; the input volume of each contrast is a node
    reference "MRImputation.input.<contrast>" on the same node (the contrasts depend on the model)."""

    modelId: str = ""
    n4: bool = True
    register: bool = True
    device: Annotated[str, Choice(["auto", "cuda", "cpu"])] = "auto"
    precision: Annotated[str, Choice(["fp32", "bf16", "fp16", "auto"])] = "fp32"
    uncertaintySamples: Annotated[int, WithinRange(0, 50)] = 0
    selfCheck: bool = False
    syntheticVolume: vtkMRMLScalarVolumeNode
    referenceVolume: vtkMRMLScalarVolumeNode


class MRImputationWidget(ScriptedLoadableModuleWidget):
    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = None
        self.panel = None
        self._sceneObservers = []

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)
        from MRImputationLib.slicer.imputation_panel import ImputationPanel

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MRImputation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MRImputationLogic()
        self.panel = ImputationPanel(self.ui, self.logic, self.logic.getParameterNode())
        self._sceneObservers = [slicer.mrmlScene.AddObserver(slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose),
                                slicer.mrmlScene.AddObserver(slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)]

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        for tag in self._sceneObservers:
            slicer.mrmlScene.RemoveObserver(tag)
        if self.panel:
            self.panel.cleanup()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        if self.panel:
            self.panel.enter()

    def onReload(self) -> None:
        """Called by "Reload": forget the Lib's modules too, so edits to them take effect."""
        import sys

        for name in [n for n in sys.modules if n == "MRImputationLib" or n.startswith("MRImputationLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        self.panel.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        self.panel.setParameterNode(self.logic.getParameterNode())
        self.panel.rebuildSelectors(self.panel.currentCard())


class MRImputationLogic(ScriptedLoadableModuleLogic):
    """Imputation and inspection; every method can be used without GUI widget.

    Example (Slicer's Python console)::

        logic = slicer.util.getModuleLogic("MRImputation")
        nodes = logic.impute(inputs={"T1": t1Node, "T2": t2Node}, model="/path/to/bundle.zip")
    """

    def __init__(self) -> None:
        """Called when the logic class is instantiated."""
        ScriptedLoadableModuleLogic.__init__(self)
        self._impl = None

    def getParameterNode(self):
        return MRImputationParameterNode(super().getParameterNode())

    def modelStore(self):
        """Installed models in Slicer's cache folder, and the catalogue shipped in Resources/models.json."""
        from MRImputationLib.models.store import ModelStore, default_models_folder

        catalogue = os.path.join(os.path.dirname(__file__), "Resources", "models.json")
        return ModelStore(default_models_folder(slicer.app.cachePath), catalogue)

    def implementation(self):
        if self._impl is None:
            from MRImputationLib.slicer.imputation_logic import ImputationLogic

            self._impl = ImputationLogic(self.modelStore())
        return self._impl

    @staticmethod
    def _options(options):
        from MRImputationLib.slicer.imputation_decisions import ImputationOptions

        return ImputationOptions(**options) if isinstance(options, dict) else options

    def startImpute(self, inputs, model, options=None, on_progress=None, on_log=None, on_finished=None):
        """Start an imputation in a child process; returns a job to poll (`job.poll()`) or cancel.

        Once finished, `job.outputs.nodes` are the new volume nodes (MRImputationLib.slicer.job.Job).
        """
        return self.implementation().start_impute(inputs, model, self._options(options), on_progress, on_log,
                                                  on_finished)

    def impute(self, inputs, model, options=None, on_progress=None, on_log=None, ensureDependencies=True):
        """Synthesize the missing contrasts and return the new volume nodes (blocking, for scripts).

        :param inputs: {"T1": volumeNode, ...}; the model's other contrasts are synthesized
        :param model: an installed model's id, or a bundle folder / .zip
        :param options: ImputationOptions or a dict of its fields (n4, register, device, precision, uncertainty, self_check)
        """
        if ensureDependencies:
            from MRImputationLib.slicer.dependencies import ensure_in_slicer

            ensure_in_slicer()
        return self.implementation().impute(inputs, model, self._options(options), on_progress, on_log)

    def startCompare(self, synthetic, real, on_progress=None, on_log=None, on_finished=None):
        """Start the error map of a synthetic volume against a real one of the same contrast."""
        return self.implementation().start_compare(synthetic, real, on_progress, on_log, on_finished)

    def compare(self, synthetic, real):
        """Error-map volume node, metrics table node and metrics of `synthetic` against `real` (blocking)."""
        return self.implementation().compare(synthetic, real)


class MRImputationTest(ScriptedLoadableModuleTest):
    """Inside Slicer only: phantom volumes and an untrained tiny model through the button's path (< 1 min)."""

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_impute_button_adds_synthetic_pd_and_error_map()

    def test_impute_button_adds_synthetic_pd_and_error_map(self):
        import tempfile
        import time
        from pathlib import Path

        from MRImputationLib.slicer import dependencies
        from MRImputationLib.slicer import self_test_data
        from MRImputationLib.slicer import bridge as slicer_bridge

        absent = dependencies.missing()
        self.assertFalse(absent, "install first (open the module and click Impute once, or PyTorch Utils): "
                         + ", ".join(r.name for r in absent))
        self.delayDisplay("Phantom volumes and an untrained tiny model")
        folder = Path(tempfile.mkdtemp(prefix="MRImputationTest-", dir=slicer.app.temporaryPath))
        bundle = self_test_data.untrained_bundle(folder / "bundle")
        volumes = self_test_data.phantom_volumes()
        inputs = {c: slicer_bridge.add_volume_node(v, f"selftest_{c}") for c, v in volumes.items()}

        widget = slicer.modules.mrimputation.widgetRepresentation().self()
        panel = widget.panel
        card = panel.store.import_bundle(bundle, replace=True)
        try:
            panel.refreshModels(select=card.id)
            self.assertEqual(panel.currentCard().id, card.id)
            self.assertEqual(set(panel.selectors), {"T1", "T2", "PD"})
            panel.selectors["PD"].setCurrentNode(None)  # pre-filled from the names; PD is to be synthesized
            self.assertEqual(panel.ui.scenarioLabel.text, "given T1, T2 → synthesizing PD")
            self.assertTrue(panel.ui.imputeButton.enabled)
            panel.params.n4, panel.params.register, panel.params.selfCheck = False, False, True
            panel.ui.imputeButton.click()
            deadline = time.monotonic() + 50
            while not panel.job.finished and time.monotonic() < deadline:
                slicer.app.processEvents()
                time.sleep(0.05)
            self.assertTrue(panel.job.ok, panel.job.error)

            synthetic = slicer.util.getNode("PD (synthetic)")
            attributes = slicer_bridge.get_attributes(synthetic)
            self.assertEqual((attributes["model"], attributes["scenario"]), (card.name, "110"))
            self.assertTrue(slicer_bridge.volume_from_node(synthetic).same_grid(volumes["T1"]))
            self.assertIsNotNone(panel.job.outputs.self_check_table)

            self.delayDisplay("Error map against the real PD")
            panel.params.syntheticVolume, panel.params.referenceVolume = synthetic, inputs["PD"]
            panel.ui.computeErrorMapButton.click()
            while not panel.job.finished and time.monotonic() < deadline + 10:
                slicer.app.processEvents()
                time.sleep(0.05)
            self.assertTrue(panel.job.ok, panel.job.error)
            self.assertGreaterEqual(panel.job.outputs.table.GetNumberOfRows(), 3)
            colors = panel.job.outputs.error_node.GetDisplayNode().GetColorNode().GetName()
            self.assertIn(colors, ("Magma", "Inferno", "MRImputation Magma"))
            panel.ui.compareLayoutButton.click()
            self.delayDisplay("Test passed")
        finally:
            panel.store.remove(card)
            panel.refreshModels()
