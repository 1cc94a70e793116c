"""The "MR Imputation Training" panel: Qt glue between Resources/UI/MRImputationTraining.ui and the logic.

Runs only inside Slicer (it drives Qt widgets); qt and slicer are imported when the panel is built,
so this file loads anywhere. Decisions (what the data holds, whether the options can work, the
command, curves and time left) live in training_decisions.py, the child process in training_job.py,
the plots in training_plots.py, the glue both panels share in panel_base.py. Training never runs on
the GUI thread: a child process does, a QTimer polls it, and Stop ends its whole process tree (the
trainer keeps a checkpoint to resume from).
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import InputError
from .panel_base import PanelBase
from .training_decisions import TrainingOptions

CHART_KEYS = ("losses", "psnr", "ssim")  # the order of the chart combo box's items in the .ui


class TrainingPanel(PanelBase):
    """Connects the .ui widgets (`ui`, from childWidgetVariables) to `logic` (the module's MRImputationTrainingLogic)."""

    POLL_MS = 250
    TITLE = "MR Imputation Training"

    SIGNALS = {
        "dataFolderPathLineEdit.currentPathChanged": "onDataFolderChanged",
        "outputFolderPathLineEdit.currentPathChanged": "onOutputFolderChanged", "startButton.clicked": "onStart",
        "stopButton.clicked": "onStop", "openRunFolderButton.clicked": "onOpenRunFolder",
        "showChartButton.clicked": "onShowChart", "chartComboBox.currentIndexChanged": "onShowChart",
    }

    def __init__(self, ui, logic, parameter_node_wrapper) -> None:
        self.summary = None
        self.contrast_boxes: dict = {}
        self.plots = None
        super().__init__(ui, logic)
        ui.stopButton.setEnabled(False)
        self.setParameterNode(parameter_node_wrapper)
        self.startDeviceProbe()

    def parameterNodeSet(self, wrapper) -> None:
        # The folders are plain strings in the node (an unset pathlib.Path would read as ".").
        self.ui.outputFolderPathLineEdit.currentPath = wrapper.outputFolder
        self.ui.dataFolderPathLineEdit.currentPath = wrapper.dataFolder
        self.onDataFolderChanged(wrapper.dataFolder)

    # data ----------------------------------------------------------------------------------------
    def onDataFolderChanged(self, path: str) -> None:
        """Scan the folder at once, so the subjects and contrasts are shown before anything starts."""
        from .training_decisions import summarize_data

        path = str(path or "")
        if self.params is not None and self.params.dataFolder != path:
            self.params.dataFolder = path
        self.summary = None
        if path:
            try:
                self.summary = summarize_data(path)
            except InputError as error:
                self.ui.dataSummaryBrowser.setPlainText(str(error))
        else:
            self.ui.dataSummaryBrowser.setHtml("<p>Choose a folder of subjects (raw images whose names say the contrast, "
                                               "e.g. IXI002-Guys-0828-T1.nii.gz, or one folder per subject), or the "
                                               "output of <code>mrimpute preprocess</code>.</p>")
        if path and self.params is not None and not self.params.outputFolder:
            suggestion = Path(path).resolve().parent / f"{Path(path).resolve().name}-training"
            self.ui.outputFolderPathLineEdit.currentPath = str(suggestion)
        self.rebuildContrastBoxes()

    def onOutputFolderChanged(self, path: str) -> None:
        if self.params is not None and self.params.outputFolder != str(path or ""):
            self.params.outputFolder = str(path or "")
        self.updateState()

    def rebuildContrastBoxes(self) -> None:
        import qt

        layout = self.ui.contrastsFrame.layout()
        for box in self.contrast_boxes.values():
            layout.removeWidget(box)
            box.deleteLater()
        self.contrast_boxes = {}
        if self.summary is not None:
            stored = [c for c in (self.params.contrasts.split(",") if self.params else []) if c]
            chosen = [c for c in stored if c in self.summary.contrasts] or self.summary.shared
            counts = self.summary.counts()
            for contrast in self.summary.contrasts:
                box = qt.QCheckBox(f"{contrast} ({counts[contrast]})")
                box.setToolTip(f"{counts[contrast]} of {len(self.summary.subjects)} subjects have {contrast}. The model "
                               "learns every combination of the ticked contrasts; subjects lacking one are left out.")
                box.setChecked(contrast in chosen)
                box.toggled.connect(self.onContrastsChanged)
                layout.addWidget(box)
                self.contrast_boxes[contrast] = box
        self.onContrastsChanged()

    def chosenContrasts(self) -> tuple[str, ...]:
        return tuple(c for c, box in self.contrast_boxes.items() if box.checked)

    def onContrastsChanged(self, *_) -> None:
        text = ",".join(self.chosenContrasts())
        if self.params is not None and self.params.contrasts != text and self.contrast_boxes:
            self.params.contrasts = text
        if self.summary is not None:
            self.ui.dataSummaryBrowser.setHtml(self.summary.to_html(self.chosenContrasts()))
        self.updateState()

    # state ---------------------------------------------------------------------------------------
    def options(self) -> TrainingOptions:
        p = self.params
        return TrainingOptions(data=p.dataFolder, out=p.outputFolder, preset=p.preset, contrasts=self.chosenContrasts(),
                                epochs=p.epochs or None, batch_size=p.batchSize or None, device=p.device,
                                resume=p.resume, evaluate=p.evaluate, install=p.install)

    def updateState(self, *_) -> None:
        if self.params is None:
            return
        ok, reason = self.options().check(self.summary)
        if ok and self.summary is None and not self.params.resume:
            ok, reason = False, "The data folder holds no usable subjects (see above)."
        self.ui.startButton.setEnabled(ok and not self.running)
        self.ui.startButton.setToolTip("Train in a separate process; Stop keeps a checkpoint to resume from."
                                       if ok else reason)
        if not self.running:
            self.ui.statusLabel.setText("Ready to start." if ok else reason)
        self.ui.deviceInfoLabel.setText(self.deviceLine())
        self.ui.openRunFolderButton.setEnabled(bool(self.params.outputFolder) and Path(self.params.outputFolder).is_dir())

    def setRunning(self, running: bool, status: str = "") -> None:
        self.ui.stopButton.setEnabled(running)
        for widget in (self.ui.dataCollapsibleButton, self.ui.settingsCollapsibleButton):
            widget.setEnabled(not running)
        if running:
            self.ui.progressBar.setValue(0)
        self.updateState()
        if status:
            self.ui.statusLabel.setText(status)

    # running -------------------------------------------------------------------------------------
    def onStart(self) -> None:
        if not self.ensureDependencies():
            return
        self.ui.logTextEdit.clear()
        self.startJob(self.startTraining, "The training could not start.",
                      "Starting (importing PyTorch, preparing the slices)…")

    def startTraining(self):
        from .training_plots import TrainingPlots

        options = self.options()
        job = self.logic.startTraining(options, on_progress=self.onProgress, on_log=self.onLog,
                                       on_epoch=self.onEpoch, on_finished=self.onFinished)
        self.plots = TrainingPlots(Path(options.out).name or "MRImputation training")
        self.plots.update(job.monitor.curves)  # a resumed run shows its curves so far
        self.plots.show(CHART_KEYS[max(self.ui.chartComboBox.currentIndex, 0)])
        return job

    def onStop(self) -> None:
        self.cancelJob("Stopping: the trainer writes a checkpoint, then the process tree ends…")

    def pollMore(self) -> None:
        """The status line: epoch, losses, validation and time left."""
        if self.running:
            self.ui.statusLabel.setText(self.job.monitor.status())

    def onProgress(self, event) -> None:
        super().onProgress(event)
        self.ui.progressBar.setFormat(f"{event.stage} %p%")

    def onEpoch(self, event) -> None:
        if self.plots is not None:
            self.plots.update(self.job.monitor.curves)

    def onFinished(self, job) -> None:
        self.setRunning(False)
        stopped = f"Stopped after {self.elapsed()}. Tick Resume and Start to continue from the checkpoint."
        if not self.succeeded(job, stopped, "Failed: see the message and the log.", "The training", keep_progress=True):
            return
        outputs = job.outputs
        lines = [f"Done in {self.elapsed()}. {job.monitor.status()}"]
        if outputs.evaluation:
            lines.append(f"Test results: {Path(outputs.evaluation['out']) / 'results.md'}")
        if outputs.bundle is not None:
            lines.append(f"Model bundle: {outputs.bundle}")
        if outputs.installed:
            self.logic.showModelInImputation(outputs.installed["id"])
            lines.append(f"Added to MR Imputation's models as {outputs.installed['name']} "
                         f"{outputs.installed['version']}.")
        self.ui.statusLabel.setText("\n".join(lines))

    def onShowChart(self, *_) -> None:
        if self.plots is None:
            return
        index = max(self.ui.chartComboBox.currentIndex, 0)
        self.plots.show(CHART_KEYS[min(index, len(CHART_KEYS) - 1)])

    def onOpenRunFolder(self) -> None:
        import qt

        if self.params is not None and self.params.outputFolder:
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(self.params.outputFolder))
