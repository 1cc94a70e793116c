"""The "MR Imputation Training" panel: Qt glue between Resources/UI/MRImputationTraining.ui and the logic.

Runs only inside Slicer (it drives Qt widgets); qt and slicer are imported when the panel is built,
so this file loads anywhere. Decisions (what the data holds, whether the settings can work, the
command, curves and time left) live in training_logic.py, the child process in training_job.py, the
plots in training_plots.py. Training never runs on the GUI thread: a child process does, a QTimer
polls it, and Stop ends its whole process tree (the trainer keeps a checkpoint to resume from).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..core.errors import InputError
from .imputation_decisions import describe_devices
from .process import format_duration
from .training_decisions import TrainingSettings

POLL_MS = 250
CHART_KEYS = ("losses", "psnr", "ssim")  # the order of the chart combo box's items in the .ui


class TrainingPanel:
    """Connects the .ui widgets (`ui`, from childWidgetVariables) to `logic` (the module's MRImputationTrainingLogic)."""

    def __init__(self, ui, logic, parameter_node_wrapper) -> None:
        import qt

        self.ui = ui
        self.logic = logic
        self.params = None
        self._gui_tag = None
        self._observer = None
        self.summary = None
        self.contrast_boxes: dict = {}
        self.job = None
        self.plots = None
        self.device_info = None
        self._device_probe = None
        self.started = time.monotonic()
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

        ui.dataFolderPathLineEdit.currentPathChanged.connect(self.onDataFolderChanged)
        ui.outputFolderPathLineEdit.currentPathChanged.connect(self.onOutputFolderChanged)
        ui.startButton.clicked.connect(self.onStart)
        ui.stopButton.clicked.connect(self.onStop)
        ui.openRunFolderButton.clicked.connect(self.onOpenRunFolder)
        ui.showChartButton.clicked.connect(self.onShowChart)
        ui.chartComboBox.currentIndexChanged.connect(self.onShowChart)
        ui.progressBar.setRange(0, 1000)
        ui.stopButton.setEnabled(False)
        self.setParameterNode(parameter_node_wrapper)
        self.startDeviceProbe()

    # parameter node ----------------------------------------------------------------------------
    def setParameterNode(self, wrapper) -> None:
        import vtk

        if self.params is not None:
            self.params.disconnectGui(self._gui_tag)
            self.params.parameterNode.RemoveObserver(self._observer)
        self.params = wrapper
        if wrapper is not None:
            self._gui_tag = wrapper.connectGui(self.ui)
            self._observer = wrapper.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, self.updateState)
            # The folders are plain strings in the node (an unset pathlib.Path would read as ".").
            self.ui.outputFolderPathLineEdit.currentPath = wrapper.outputFolder
            self.ui.dataFolderPathLineEdit.currentPath = wrapper.dataFolder
            self.onDataFolderChanged(wrapper.dataFolder)

    def cleanup(self) -> None:
        """Stop everything that runs: the training's process tree, the device probe, timers, observers."""
        if self.job is not None and not self.job.finished:
            self.job.cancel()
            self.job.child.wait()
        if self._device_probe is not None:
            self._device_probe.cancel(wait=True)
        self.timer.stop()
        self.setParameterNode(None)

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
    def settings(self) -> TrainingSettings:
        p = self.params
        return TrainingSettings(data=p.dataFolder, out=p.outputFolder, preset=p.preset, contrasts=self.chosenContrasts(),
                                epochs=p.epochs or None, batch_size=p.batchSize or None, device=p.device,
                                resume=p.resume, evaluate=p.evaluate, install=p.install)

    @property
    def running(self) -> bool:
        return self.job is not None and not self.job.finished

    def updateState(self, *_) -> None:
        if self.params is None:
            return
        ok, reason = self.settings().check(self.summary)
        if ok and self.summary is None and not self.params.resume:
            ok, reason = False, "The data folder holds no usable subjects (see above)."
        self.ui.startButton.setEnabled(ok and not self.running)
        self.ui.startButton.setToolTip("Train in a separate process; Stop keeps a checkpoint to resume from."
                                       if ok else reason)
        if not self.running:
            self.ui.statusLabel.setText("Ready to start." if ok else reason)
        self.ui.deviceInfoLabel.setText(describe_devices(self.device_info))
        self.ui.openRunFolderButton.setEnabled(bool(self.params.outputFolder) and Path(self.params.outputFolder).is_dir())

    def setRunning(self, running: bool) -> None:
        self.ui.stopButton.setEnabled(running)
        for widget in (self.ui.dataCollapsibleButton, self.ui.settingsCollapsibleButton):
            widget.setEnabled(not running)
        if running:
            self.ui.progressBar.setValue(0)
        self.updateState()

    # running -------------------------------------------------------------------------------------
    def onStart(self) -> None:
        import slicer

        from .dependencies import DependencyError, ensure_in_slicer
        from .training_plots import TrainingPlots

        try:
            ensure_in_slicer(requester="MR Imputation Training")
        except DependencyError as error:
            slicer.util.errorDisplay(str(error), windowTitle="MR Imputation Training")
            return
        settings = self.settings()
        self.ui.logTextEdit.clear()
        self.started = time.monotonic()
        with slicer.util.tryWithErrorDisplay("The training could not start.", waitCursor=True):
            self.job = self.logic.startTraining(settings, on_progress=self.onProgress, on_log=self.onLog,
                                                on_epoch=self.onEpoch, on_finished=self.onFinished)
            self.plots = TrainingPlots(Path(settings.out).name or "MRImputation training")
            self.plots.update(self.job.monitor.curves)  # a resumed run shows its curves so far
            self.plots.show(CHART_KEYS[max(self.ui.chartComboBox.currentIndex, 0)])
            self.setRunning(True)
            self.ui.statusLabel.setText("Starting (importing PyTorch, preparing the slices)…")
            self.timer.start()

    def onStop(self) -> None:
        if self.running:
            self.job.cancel()
            self.ui.statusLabel.setText("Stopping: the trainer writes a checkpoint, then the process tree ends…")

    def poll(self) -> None:
        if self.job is not None and not self.job.finished:
            self.job.poll()
            if not self.job.finished:
                self.ui.statusLabel.setText(self.job.monitor.status())
        if self._device_probe is not None and self._device_probe.poll() is not None:
            self._device_probe = None
            self.updateState()
        if not self.running and self._device_probe is None:
            self.timer.stop()

    def onProgress(self, event) -> None:
        self.ui.progressBar.setValue(int(event.fraction * 1000))
        self.ui.progressBar.setFormat(f"{event.stage} %p%")

    def onLog(self, event) -> None:
        self.ui.logTextEdit.appendPlainText(event.message)

    def onEpoch(self, record: dict) -> None:
        if self.plots is not None:
            self.plots.update(self.job.monitor.curves)

    def onFinished(self, job) -> None:
        import slicer

        self.setRunning(False)
        elapsed = format_duration(time.monotonic() - self.started)
        if job.cancelled:
            self.ui.statusLabel.setText(f"Stopped after {elapsed}. Tick Resume and Start to continue from the checkpoint.")
            return
        if job.error:
            self.ui.statusLabel.setText("Failed: see the message and the log.")
            slicer.util.errorDisplay(f"The training failed: {job.error}", windowTitle="MR Imputation Training")
            return
        self.ui.progressBar.setValue(1000)
        lines = [f"Done in {elapsed}. {self.job.monitor.status()}"]
        if job.info.get("evaluation"):
            lines.append(f"Test results: {Path(job.info['evaluation']['out']) / 'results.md'}")
        if job.bundle is not None:
            lines.append(f"Model bundle: {job.bundle}")
        if job.installed:
            self.logic.showModelInImputation(job.installed["id"])
            lines.append(f"Added to MR Imputation's models as {job.installed['name']} {job.installed['version']}.")
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

    def startDeviceProbe(self) -> None:
        from .imputation_logic import start_device_probe

        try:
            self._device_probe = start_device_probe(lambda info: setattr(self, "device_info", info))
        except Exception as error:  # noqa: BLE001 - the line says so; auto still decides at run time
            self.ui.deviceInfoLabel.setText(f"Devices could not be detected ({error}); auto decides at run time.")
            return
        self.timer.start()
