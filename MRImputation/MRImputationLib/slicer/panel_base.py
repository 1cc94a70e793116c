"""What both panels (imputation_panel.py, training_panel.py) share: the Qt glue around one job.

The parameter node bound to the .ui, a QTimer that polls the running job (a job.py `Job`) and the
device probe, the progress bar and log, starting a job from a button with its errors in a dialog,
and cleanup that stops every child process tree. Each panel adds its own widgets and decisions.
Runs only inside Slicer (qt, vtk and slicer are imported when a panel is built or used).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from ..core.events import LogEvent, ProgressEvent, format_duration
from .devices import describe_devices
from .job import Job


class PanelBase:
    """Connects `ui` (childWidgetVariables of the .ui) and `logic` (the module's Logic) around one job at a time.

    A subclass names its widgets' signals and their slots in `SIGNALS`, sets its own fields, then
    calls `setParameterNode(wrapper)` and `startDeviceProbe()`; it implements `updateState()` and
    `setRunning(running, status)`.
    """

    POLL_MS = 200
    TITLE = "MR Imputation"  # of error dialogs, and who asks to install missing packages
    SIGNALS: dict[str, str] = {}  # "widget.signal" of the .ui -> the name of this panel's slot

    def __init__(self, ui, logic) -> None:
        import qt

        self.ui = ui
        self.logic = logic
        self.params = None
        self._gui_tag = None
        self._observer = None
        self.job: Job | None = None
        self.device_info: dict | None = None
        self._device_probe: Job | None = None
        self.started = time.monotonic()
        self.timer = qt.QTimer()
        self.timer.setInterval(self.POLL_MS)
        self.timer.timeout.connect(self.poll)
        ui.progressBar.setRange(0, 1000)
        for sender, slot in self.SIGNALS.items():
            widget, signal = sender.split(".")
            getattr(getattr(ui, widget), signal).connect(getattr(self, slot))

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
            self.parameterNodeSet(wrapper)

    def parameterNodeSet(self, wrapper) -> None:
        """A parameter node was bound: show what it holds."""
        self.updateState()

    def updateState(self, *_) -> None:
        raise NotImplementedError

    def setRunning(self, running: bool, status: str = "") -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        """Stop everything that runs, quietly (Slicer closing, the module reloaded: no dialog, nothing raised):
        the job's and the device probe's process trees (each child keeps its grace period to finish writing),
        what the panel adds (`cleanupMore`), the timer and the parameter-node observer. Each step runs
        even if an earlier one failed."""
        for job in (self.job, self._device_probe):
            if job is not None and not job.finished:
                job.cancel(wait=True, quiet=True)  # never raises, calls nothing back
        self._device_probe = None
        for step in (self.cleanupMore, self.timer.stop, lambda: self.setParameterNode(None)):
            try:
                step()
            except Exception as error:  # noqa: BLE001 - the next steps must still run
                logging.getLogger(__name__).warning("%s cleanup: %s", self.TITLE, error)

    def cleanupMore(self) -> None:
        """What else a panel stops when it goes away (a download, a folder scan)."""

    def succeeded(self, job: Job, cancelled: str, failed: str, what: str, keep_progress: bool = False) -> bool:
        """A finished job: when it was cancelled or failed, say so (`cancelled` / `failed` in the status line,
        the error of `what` in a dialog) and return False; when it succeeded, fill the progress bar.
        A cancelled job's bar is emptied unless `keep_progress` (how far a stopped training got)."""
        if job.cancelled:
            self.ui.statusLabel.setText(cancelled)
            if not keep_progress:
                self.ui.progressBar.setValue(0)
            return False
        if job.error:
            self.ui.statusLabel.setText(failed)
            self.showError(f"{what} failed: {job.error}")
            return False
        self.ui.progressBar.setValue(1000)
        return True

    # the job -----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.job is not None and not self.job.finished

    def busy(self) -> bool:
        """Whether the timer still has something to poll."""
        return self.running or self._device_probe is not None

    def ensureDependencies(self, requirements=None) -> bool:
        """Install what is missing of `requirements` (default: all; dependencies.requirements_for says what a run
        uses) after asking, before a job starts; False, with a dialog saying why, if not done."""
        import slicer

        from .dependencies import REQUIREMENTS, DependencyError, ensure_in_slicer

        try:
            ensure_in_slicer(REQUIREMENTS if requirements is None else requirements, requester=self.TITLE)
        except DependencyError as error:
            slicer.util.errorDisplay(str(error), windowTitle=self.TITLE)
            return False
        return True

    def startJob(self, start: Callable[[], Job], failure: str, status: str) -> None:
        """Start a job from a button: errors go to a dialog headed `failure`; the timer then polls it."""
        import slicer

        with slicer.util.tryWithErrorDisplay(failure, waitCursor=True):
            job = start()
            try:
                self.job = job
                self.started = time.monotonic()
                self.timer.start()
                self.setRunning(True, status)
            except BaseException:
                job.cancel(quiet=True)  # never leave a child running that no Stop button can reach
                raise

    def cancelJob(self, status: str) -> None:
        if self.running:
            self.job.cancel()
            self.ui.statusLabel.setText(status)

    def poll(self) -> None:
        if self.running:
            self.job.poll()
        self.pollMore()
        if self._device_probe is not None and self._device_probe.poll():
            self._device_probe = None
            self.updateState()
        if not self.busy():
            self.timer.stop()

    def pollMore(self) -> None:
        """What else a panel follows on each tick (a download, a status line)."""

    def elapsed(self) -> str:
        """Time since the job started, e.g. '3 min 20 s'."""
        return format_duration(time.monotonic() - self.started)

    def showError(self, message: str) -> None:
        import slicer

        slicer.util.errorDisplay(message, windowTitle=self.TITLE)

    def onProgress(self, event: ProgressEvent) -> None:
        self.ui.progressBar.setValue(int(event.fraction * 1000))

    def onLog(self, event: LogEvent) -> None:
        self.ui.logTextEdit.appendPlainText(event.message)

    # devices -----------------------------------------------------------------------------------
    def startDeviceProbe(self) -> None:
        """Ask a child which devices PyTorch sees; the device line says it once answered."""
        from .devices import start_device_probe

        try:
            self._device_probe = start_device_probe(lambda info: setattr(self, "device_info", info))
        except Exception as error:  # noqa: BLE001 - the line says so; auto still decides at run time
            self.ui.deviceInfoLabel.setText(f"Devices could not be detected ({error}); auto decides at run time.")
            return
        self.timer.start()

    def deviceLine(self) -> str:
        return describe_devices(self.device_info)
