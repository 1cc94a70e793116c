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
            "MM-GAN: Sharma and Hamarneh, IEEE TMI 2020. IXI data: brain-development.org (CC BY-SA 3.0). Sample "
            "data: BraTS 2023 case BraTS-GLI-00001-000 (research use, with attribution; see the README), from the "
            "BrainLesion tutorials. Built on the Slicer scripted-module template (Kitware, Isomics, PerkLab).")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Sample Data > MRImputation: a real four-contrast case (downloaded on demand, SHA-256 checked)."""
    from MRImputationLib.slicer.sample_data import register_sample_data

    register_sample_data(os.path.join(os.path.dirname(__file__), "Resources", "Icons", "MRImputation.png"))


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
        """The built-in models (Resources/Models), the installed ones (~/.mrimputation/models, or
        $MRIMPUTATION_MODELS; never Slicer's cache folder, which Slicer prunes and clears) and the catalogue
        shipped in Resources/models.json. Models an earlier version installed in Slicer's cache folder are
        moved to the models folder first."""
        import logging

        from MRImputationLib.models.store import user_store

        catalogue = os.path.join(os.path.dirname(__file__), "Resources", "models.json")
        return user_store(catalogue, cache_path=slicer.app.cachePath, on_log=logging.info)

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
    """Inside Slicer only: phantom volumes and an untrained tiny model through the button's path (< 1 min).
    It installs what it uses first (no registration: no antspyx), or skips saying why."""

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_impute_button_adds_synthetic_pd_and_error_map()

    def test_impute_button_adds_synthetic_pd_and_error_map(self):
        from MRImputationLib.slicer.self_tests import imputation_self_test

        imputation_self_test(self)
