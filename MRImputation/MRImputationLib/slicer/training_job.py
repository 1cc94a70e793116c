"""A training run in a child process, as the training panel (or a script) follows it: start, poll, stop.

`start_training(settings)` runs the headless training script's code (`python -m
MRImputationLib.pipelines.headless_training`, PythonSlicer inside Slicer) through process_runner's
ChildProcess, so stopping ends the whole process tree. process_runner reports events it does not
know as log lines; the trainer's `{"event": "epoch", ...}` lines are picked out of them here and
become curves (`job.monitor.curves`) and a status line with the time left (`job.monitor.status()`).
No Qt and no Slicer needed: the panel polls from a QTimer, scripts and tests with `wait()`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from ..core.errors import InputError
from .process import ChildProcess, LogEvent, ProgressEvent, RunResult
from .training_decisions import TrainingCurves, TrainingMonitor, TrainingSettings, parse_epoch_event, training_command


@dataclass
class TrainingJob:
    """One training child. Poll until `finished`; then `ok`, `error`, `cancelled`, `bundle`, `installed`."""

    child: ChildProcess
    settings: TrainingSettings
    monitor: TrainingMonitor
    on_epoch: Callable[[dict], None] | None = None
    on_log: Callable[[LogEvent], None] | None = None
    on_finished: Callable[["TrainingJob"], None] | None = None
    result: RunResult | None = None
    info: dict = field(default_factory=dict)
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def ok(self) -> bool:
        return self.finished and self.result.ok and not self.error

    @property
    def cancelled(self) -> bool:
        return bool(self.result and self.result.cancelled)

    @property
    def bundle(self) -> Path | None:
        """The model bundle the run exported, once done."""
        return Path(self.info["bundle"]) if self.info.get("bundle") else None

    @property
    def installed(self) -> dict | None:
        """{"id", "name", "version", "path"} of the model installed for MR Imputation, if it was asked for."""
        return self.info.get("installed")

    def _log(self, event: LogEvent) -> None:
        record = parse_epoch_event(event.message) if event.stream == "stdout" else None
        if record is not None:
            self.monitor.on_epoch(record)
            if self.on_epoch is not None:
                self.on_epoch(record)
        elif self.on_log is not None:
            self.on_log(event)

    def poll(self) -> bool:
        """Handle the child's new output; True once it has ended (then `on_finished` has been called)."""
        if self.result is not None:
            return True
        result = self.child.poll()
        if result is None:
            return False
        self.result = result
        if result.ok:
            self.info = dict(result.done.info)
        elif not result.cancelled:
            self.error = result.message()
        if self.on_finished is not None:
            self.on_finished(self)
        return True

    def cancel(self) -> None:
        """Stop the child and everything it started; the trainer writes a checkpoint to resume from."""
        self.child.cancel()

    def wait(self, timeout: float | None = None, idle: Callable[[], None] | None = None) -> "TrainingJob":
        """Block until the child ends (callbacks run here); InputError with the reason if it failed."""
        self.child.wait(timeout=timeout, idle=idle)
        self.poll()
        if self.error:
            raise InputError(self.error)
        return self


def planned_epochs(settings: TrainingSettings) -> int | None:
    """The epochs the run will reach: the setting, else the run's saved config (resume), else the preset's."""
    from ..training.config import TRAIN_PRESETS

    if settings.epochs:
        return settings.epochs
    config = Path(settings.out) / "config.json"
    if settings.resume and config.is_file():
        return json.loads(config.read_text(encoding="utf-8")).get("epochs")
    preset = TRAIN_PRESETS.get(settings.preset)
    return preset.epochs if preset else None


def _default_python_and_environment() -> tuple[str, dict]:
    """PythonSlicer and Slicer's start-up environment inside Slicer, else this Python and environment."""
    from .imputation_decisions import child_environment

    try:
        from .imputation_logic import base_environment, python_executable

        return python_executable(), child_environment(base_environment())
    except ImportError:  # no slicer package at all: a plain Python
        return sys.executable, child_environment()


def start_training(settings: TrainingSettings, *, models_folder: str | Path | None = None, python: str | None = None,
                   env: dict | None = None, command: Sequence[str] | None = None,
                   on_progress: Callable[[ProgressEvent], None] | None = None,
                   on_log: Callable[[LogEvent], None] | None = None, on_epoch: Callable[[dict], None] | None = None,
                   on_finished: Callable[[TrainingJob], None] | None = None,
                   clock: Callable[[], float] | None = None) -> TrainingJob:
    """Start training in a child process and return at once; poll the job or `wait()` for it.

    `models_folder`: where the finished bundle is installed when `settings.install` (MR Imputation's
    store folder). `command` replaces the training command (tests substitute the child, not Slicer).
    """
    from .imputation_decisions import lib_folder

    ok, reason = settings.check()
    if not ok:
        raise InputError(reason)
    # The child runs in the library's folder: relative paths would point there.
    settings = replace(settings, data=str(Path(settings.data).resolve()), out=str(Path(settings.out).resolve()))
    default_python, default_env = _default_python_and_environment()
    if command is None:
        command = training_command(python or default_python, settings, models_folder)
    curves = TrainingCurves.from_history(settings.out) if settings.resume else TrainingCurves()
    monitor = TrainingMonitor(planned_epochs(settings), curves, **({"clock": clock} if clock else {}))

    def progress(event: ProgressEvent) -> None:
        monitor.on_progress(event)
        if on_progress is not None:
            on_progress(event)

    child = ChildProcess(command, env=env if env is not None else default_env, cwd=str(lib_folder()),
                         on_progress=progress)
    job = TrainingJob(child, settings, monitor, on_epoch, on_log, on_finished)
    child.on_log = job._log
    child.start()
    return job
