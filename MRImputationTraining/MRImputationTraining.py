"""3D Slicer module "MR Imputation Training": train an MM-GAN model on your own subjects.

Slicer glue only; the work is in MRImputationLib (imported inside functions, so loading the module
costs nothing): the panel in slicer/training_panel.py, decisions in slicer/training_decisions.py, the
child process in slicer/training_job.py, curves in slicer/training_plots.py. Training runs the same
command as the headless script train.py, `mrimpute train` (with --evaluate, --export, --install), in
a child process; the model store is MR Imputation's.
"""

from typing import Annotated

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)


class MRImputationTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MR Imputation Training")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Image Synthesis")]
        self.parent.dependencies = ["MRImputation"]
        self.parent.contributors = ["MRImputation contributors"]
        self.parent.helpText = _(
            "Trains an MM-GAN model that synthesizes any missing contrast from the others, on a folder of your "
            "subjects (raw, or preprocessed with <code>mrimpute preprocess</code>). Choose the folder: its subjects "
            "and contrasts are listed before anything starts. Pick the contrasts, a preset and an output folder, then "
            "<b>Start training</b>. Training runs in a separate process (Stop ends it and keeps a checkpoint; Resume "
            "continues); the curves appear in a plot view. At the end the model is evaluated on held-out subjects and "
            "added to MR Imputation's models. Headless: <code>Slicer --no-main-window --python-script train.py -- "
            "DATA --out RUN</code>.")
        self.parent.acknowledgementText = _(
            "MM-GAN: Sharma and Hamarneh, IEEE TMI 2020. Built on the Slicer scripted-module template "
            "(Kitware, Isomics, PerkLab).")


@parameterNodeWrapper
class MRImputationTrainingParameterNode:
    """The panel's choices, saved with the scene. The folders are strings (bound by the panel, not the wrapper)."""

    dataFolder: str = ""
    outputFolder: str = ""
    contrasts: str = ""  # comma-separated; empty: those every subject has
    # The same list as MRImputationLib.slicer.training_decisions.PRESETS (a static test keeps them equal).
    preset: Annotated[str, Choice(["tiny", "cyclegan-tiny", "vae-unet-tiny", "seed-ixi", "vae-unet", "mmgan-faithful",
                                   "cyclegan-unet", "cyclegan-resnet"])] = "mmgan-faithful"
    epochs: Annotated[int, WithinRange(0, 1000)] = 0  # 0: the preset's
    batchSize: Annotated[int, WithinRange(0, 256)] = 0  # 0: the preset's
    device: Annotated[str, Choice(["auto", "cuda", "cpu"])] = "auto"
    resume: bool = False
    evaluate: bool = True
    install: bool = True


class MRImputationTrainingWidget(ScriptedLoadableModuleWidget):
    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = None
        self.panel = None
        self._sceneObservers = []

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)
        from MRImputationLib.slicer.training_panel import TrainingPanel

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MRImputationTraining.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MRImputationTrainingLogic()
        self.panel = TrainingPanel(self.ui, self.logic, self.logic.getParameterNode())
        self._sceneObservers = [slicer.mrmlScene.AddObserver(slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose),
                                slicer.mrmlScene.AddObserver(slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)]

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        for tag in self._sceneObservers:
            slicer.mrmlScene.RemoveObserver(tag)
        if self.panel:
            self.panel.cleanup()

    def onReload(self) -> None:
        """Called by "Reload": forget the Lib's modules too, so edits to any of its subpackages take effect."""
        import sys

        for name in [n for n in sys.modules if n == "MRImputationLib" or n.startswith("MRImputationLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        self.panel.setParameterNode(None)
        self.panel.plots = None  # its nodes go with the scene

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        self.panel.setParameterNode(self.logic.getParameterNode())


class MRImputationTrainingLogic(ScriptedLoadableModuleLogic):
    """Training without the widget; every method can be used without GUI widget.

    It reuses MR Imputation's logic (its model store: a finished model is installed where MR Imputation
    lists models) and MRImputationLib's training pipeline. Example (Slicer's Python console)::

        logic = slicer.util.getModuleLogic("MRImputationTraining")
        job = logic.train({"data": "/data/IXI-pre", "out": "/runs/ixi", "preset": "seed-ixi", "install": True})
        print(job.outputs.evaluation["summary"], job.outputs.installed)
    """

    def __init__(self) -> None:
        """Called when the logic class is instantiated."""
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return MRImputationTrainingParameterNode(super().getParameterNode())

    @staticmethod
    def imputationLogic():
        """MR Imputation's logic (without opening its panel): its model store is where trained models go."""
        from MRImputation import MRImputationLogic

        return MRImputationLogic()

    def modelStore(self):
        return self.imputationLogic().modelStore()

    @staticmethod
    def summarizeData(folder):
        """The subjects of `folder` and the contrasts each has (MRImputationLib.slicer.training_decisions.DataSummary)."""
        from MRImputationLib.slicer.training_decisions import summarize_data

        return summarize_data(folder)

    @staticmethod
    def _options(options):
        from MRImputationLib.slicer.training_decisions import TrainingOptions

        return TrainingOptions(**options) if isinstance(options, dict) else options

    def startTraining(self, options, on_progress=None, on_log=None, on_epoch=None, on_finished=None):
        """Start training in a child process (whole tree stopped by `job.cancel()`); returns the job to poll.

        :param options: TrainingOptions or a dict of its fields (data, out, preset, contrasts, epochs, batch_size,
            device, resume, evaluate, export, install, steps_per_epoch)
        """
        from MRImputationLib.slicer.training_job import start_training

        return start_training(self._options(options), models_folder=self.modelStore().ensure_folder(),
                              on_progress=on_progress, on_log=on_log, on_epoch=on_epoch, on_finished=on_finished)

    def train(self, options, timeout=None, ensureDependencies=True):
        """Blocking training for scripts; returns the finished job (raises with the reason if it failed)."""
        from MRImputationLib.slicer.job import idle_events

        if ensureDependencies:
            from MRImputationLib.slicer.dependencies import ensure_in_slicer

            ensure_in_slicer(requester="MR Imputation Training")
        job = self.startTraining(options)
        try:
            job.wait(timeout, idle_events())
        except TimeoutError:
            job.cancel(wait=True)
            raise
        if job.outputs.installed:
            self.showModelInImputation(job.outputs.installed["id"])
        return job

    def showModelInImputation(self, modelId):
        """Refresh MR Imputation's model list and select the new model there (it lists it anyway when opened)."""
        if slicer.util.mainWindow() is None:  # headless: no panel to refresh
            return
        widget = slicer.util.getModuleWidget("MRImputation")
        if widget is not None and getattr(widget, "panel", None) is not None:
            widget.panel.refreshModels(select=modelId)


class MRImputationTrainingTest(ScriptedLoadableModuleTest):
    """Inside Slicer only: three small phantom subjects, one epoch of the tiny preset through the Start button (< 2 min).
    It installs what it uses first (preprocessed data: no antspyx), or skips saying why."""

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_start_button_trains_plots_curves_and_adds_the_model_to_imputation()

    def test_start_button_trains_plots_curves_and_adds_the_model_to_imputation(self):
        from MRImputationLib.slicer.self_tests import training_self_test

        training_self_test(self, MRImputationTrainingLogic().modelStore())
