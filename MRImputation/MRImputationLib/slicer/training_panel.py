"""The "MR Imputation Training" panel: Qt glue between Resources/UI/MRImputationTraining.ui and the logic.

Runs only inside Slicer (it drives Qt widgets); qt and slicer are imported when the panel is built,
so this file loads anywhere. Decisions (what the data holds, when the data-folder field is read, the
suggested output folder, whether the options can work, the command) live in training_decisions.py,
curves and time left in training_progress.py, the child process in training_job.py, the plots in
training_plots.py, the glue both panels share in panel_base.py. Nothing slow runs on the GUI thread:
the data folder is read on a worker thread once typing pauses, training in a child process a
QTimer polls, and Stop asks the trainer to write its checkpoint before the process tree ends.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import InputError
from .panel_base import PanelBase
from .training_decisions import DEBOUNCE_MS, FolderInput, TrainingOptions, output_suggestion

CHART_KEYS = ("losses", "psnr", "ssim")  # the order of the chart combo box's items in the .ui
EMPTY_DATA_HINT = ("<p>Choose a folder of subjects (raw images whose names say the contrast, e.g. "
                   "IXI002-Guys-0828-T1.nii.gz, or one folder per subject), or the output of "
                   "<code>mrimpute preprocess</code>.</p>")


def path_text(path_line_edit):
    """The QLineEdit inside a ctkPathLineEdit. Its textChanged fires on every change, clearing included;
    the widget's own currentPathChanged skips text its validator rejects, such as an empty field."""
    import qt

    return path_line_edit.findChildren(qt.QLineEdit)[0]


class TrainingPanel(PanelBase):
    """Connects the .ui widgets (`ui`, from childWidgetVariables) to `logic` (the module's MRImputationTrainingLogic)."""

    POLL_MS = 250
    TITLE = "MR Imputation Training"

    SIGNALS = {
        "startButton.clicked": "onStart", "stopButton.clicked": "onStop",
        "openRunFolderButton.clicked": "onOpenRunFolder", "showChartButton.clicked": "onShowChart",
        "chartComboBox.currentIndexChanged": "onShowChart",
    }

    def __init__(self, ui, logic, parameter_node_wrapper) -> None:
        import qt

        self.summary = None
        self.contrast_boxes: dict = {}
        self.plots = None
        self.folder = FolderInput()
        self.scan = None  # (path, BackgroundTask) while the data folder is read
        self.suggested_output = ""
        super().__init__(ui, logic)
        self.debounce = qt.QTimer()
        self.debounce.setSingleShot(True)
        self.debounce.setInterval(DEBOUNCE_MS)
        self.debounce.timeout.connect(self.onDataFolderSettled)
        data_text = path_text(ui.dataFolderPathLineEdit)
        data_text.textChanged.connect(self.onDataFolderTyped)
        data_text.editingFinished.connect(self.onDataFolderSettled)
        path_text(ui.outputFolderPathLineEdit).textChanged.connect(self.onOutputFolderChanged)
        ui.stopButton.setEnabled(False)
        self.setParameterNode(parameter_node_wrapper)
        self.startDeviceProbe()

    def parameterNodeSet(self, wrapper) -> None:
        # The folders are plain strings in the node (an unset pathlib.Path would read as ".").
        self.ui.outputFolderPathLineEdit.currentPath = wrapper.outputFolder
        self.ui.dataFolderPathLineEdit.currentPath = wrapper.dataFolder
        self.debounce.stop()
        self.folder = FolderInput(wrapper.dataFolder)
        self.applyDataFolder(wrapper.dataFolder)

    def cleanupMore(self) -> None:
        self.debounce.stop()
        self.scan = None  # the bounded read ends on its own; its answer is dropped

    # data ----------------------------------------------------------------------------------------
    def onDataFolderTyped(self, text: str) -> None:
        """Every keystroke: wait for a pause (or Enter / focus out) before reading anything."""
        self.folder.typed(text)
        self.debounce.start()
        self.updateState()

    def onDataFolderSettled(self, *_) -> None:
        self.debounce.stop()
        path = self.folder.settle()
        if path is not None:
            self.applyDataFolder(path)

    def applyDataFolder(self, path: str) -> None:
        """A settled data folder ("" when cleared): store it, update the suggested output folder, and read
        its subjects and contrasts on a worker thread, so they are shown before anything starts."""
        from .background import BackgroundTask
        from .training_decisions import summarize_data

        if self.params is not None and self.params.dataFolder != path:
            self.params.dataFolder = path
        self.suggestOutputFolder(path)
        self.summary, self.scan = None, None
        if path:
            self.ui.dataSummaryBrowser.setPlainText(f"Reading {path} …")
            self.scan = (path, BackgroundTask(lambda report: summarize_data(path), "MRImputation data folder").start())
            self.timer.start()
        else:
            self.ui.dataSummaryBrowser.setHtml(EMPTY_DATA_HINT)
        self.rebuildContrastBoxes()

    def pollMore(self) -> None:
        """The data folder being read; while training, the status line (epoch, losses, validation, time left)."""
        if self.scan is not None and self.scan[1].finished:
            (path, task), self.scan = self.scan, None
            if self.folder.wanted(path):
                if task.error is None:
                    self.summary = task.result
                else:
                    error = task.error
                    self.ui.dataSummaryBrowser.setPlainText(str(error) if isinstance(error, InputError) else
                                                            f"{path} could not be read: {error}")
                self.rebuildContrastBoxes()
        if self.running:
            self.ui.statusLabel.setText(self.job.monitor.status())

    def busy(self) -> bool:
        return super().busy() or self.scan is not None

    def dataFolderBusy(self) -> bool:
        """True while typed text waits for its pause or the data folder is being read (the self-test waits)."""
        return self.folder.waiting or self.scan is not None

    def suggestOutputFolder(self, data: str) -> None:
        """'<data>-training' beside the data folder, until the user chooses the output folder themselves."""
        suggestion = output_suggestion(data, self.params.outputFolder if self.params else "", self.suggested_output)
        if suggestion is not None:
            self.suggested_output = suggestion
            self.ui.outputFolderPathLineEdit.currentPath = suggestion

    def onOutputFolderChanged(self, path: str) -> None:
        path = str(path or "").strip()
        if self.params is not None and self.params.outputFolder != path:
            self.params.outputFolder = path
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
        if self.dataFolderBusy():
            ok, reason = False, "Reading the data folder…"
        elif ok and self.summary is None and not self.params.resume:
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
        from .dependencies import requirements_for

        preprocessed = self.summary is not None and self.summary.preprocessed  # raw data is registered first
        if not self.ensureDependencies(requirements_for(register=not preprocessed)):
            return
        self.ui.logTextEdit.clear()
        self.startJob(self.startTraining, "The training could not start.",
                      "Starting (importing PyTorch, preparing the slices)…")
        if self.running:  # the path fields' history (their settingKey) keeps the folders of runs that started
            self.ui.dataFolderPathLineEdit.addCurrentPathToHistory()
            self.ui.outputFolderPathLineEdit.addCurrentPathToHistory()

    def startTraining(self):
        """The plots first, so that nothing can fail between starting the child and the Stop button reaching it."""
        from .training_plots import TrainingPlots

        options = self.options()
        self.plots = TrainingPlots(Path(options.out).name or "MRImputation training")
        self.plots.show(CHART_KEYS[max(self.ui.chartComboBox.currentIndex, 0)])
        job = self.logic.startTraining(options, on_progress=self.onProgress, on_log=self.onLog,
                                       on_epoch=self.onEpoch, on_finished=self.onFinished)
        try:
            self.plots.update(job.monitor.curves)  # a resumed run shows its curves so far
        except BaseException:
            job.cancel(wait=True, quiet=True)  # nobody would poll it: stop it here, tree and all
            raise
        return job

    def onStop(self) -> None:
        self.cancelJob("Stopping: the trainer writes a checkpoint, then the process tree ends…")

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
