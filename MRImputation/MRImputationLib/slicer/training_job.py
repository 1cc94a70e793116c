"""A training run in a child process, as the training panel (or a script) follows it: start, poll, stop.

`start_training(options)` runs `mrimpute train` (`python -m MRImputationLib train ...`, PythonSlicer
inside Slicer) as a job.py `Job`: stopping asks the trainer to stop, gives it `TRAINING_GRACE_S` to
write its checkpoint, then ends whatever of the process tree still runs. The job's monitor
(`job.monitor`, a TrainingMonitor) turns the child's epoch and progress events into curves and a
status line with the time left; once done, `job.outputs` says what the run made (`TrainingOutputs`).
No Qt and no Slicer needed: the panel polls from a QTimer, scripts and tests with `wait()`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from ..core.errors import InputError
from ..core.events import EpochEvent, LogEvent, ProgressEvent
from ..training.run_folder import RunFolder
from .job import Job, python_executable, start_job
from .training_decisions import TrainingOptions, training_command
from .training_progress import TrainingCurves, TrainingMonitor

# Stop asks the trainer to stop; it ends its current step and writes checkpoints/last.pt (hundreds of
# MB for the faithful preset, on a slow disk) before exiting. Only what still runs after this is killed.
TRAINING_GRACE_S = 60.0


@dataclass(frozen=True)
class TrainingOutputs:
    """What a finished run reported: its bundle, the model installed for MR Imputation, its test evaluation."""

    bundle: Path | None = None
    installed: dict | None = None  # {"id", "name", "version", "path"} when --install was asked for
    evaluation: dict | None = None  # {"out", "subjects", "summary"} when --evaluate was asked for

    @classmethod
    def from_info(cls, info: dict) -> "TrainingOutputs":
        """From the done event of `mrimpute train`."""
        return cls(Path(info["bundle"]) if info.get("bundle") else None, info.get("installed"), info.get("evaluation"))


def planned_epochs(options: TrainingOptions) -> int | None:
    """The epochs the run will reach: the option, else the run's saved config (resume), else the preset's."""
    from ..training.config import TRAIN_PRESETS

    if options.epochs:
        return options.epochs
    config = RunFolder(options.out).config
    if options.resume and config.is_file():
        return json.loads(config.read_text(encoding="utf-8")).get("epochs")
    preset = TRAIN_PRESETS.get(options.preset)
    return preset.epochs if preset else None


def start_training(options: TrainingOptions, *, models_folder: str | Path | None = None, python: str | None = None,
                   env: dict | None = None, command: Sequence[str] | None = None,
                   on_progress: Callable[[ProgressEvent], None] | None = None,
                   on_log: Callable[[LogEvent], None] | None = None,
                   on_epoch: Callable[[EpochEvent], None] | None = None,
                   on_finished: Callable[[Job], None] | None = None,
                   clock: Callable[[], float] | None = None,
                   grace_s: float = TRAINING_GRACE_S) -> Job[TrainingOutputs]:
    """Start training in a child process and return its job at once; poll it or `wait()` for it.

    `models_folder`: where the finished bundle is installed when `options.install` (MR Imputation's
    store folder). `command` replaces the training command (tests substitute the child, not Slicer).
    `grace_s`: how long Stop lets the trainer finish its step and write its checkpoint before the
    process tree is killed.
    """
    ok, reason = options.check()
    if not ok:
        raise InputError(reason)
    # The child runs in the library's folder: relative paths would point there.
    options = replace(options, data=str(Path(options.data).resolve()), out=str(Path(options.out).resolve()))
    if command is None:
        command = training_command(python or python_executable(), options, models_folder)
    curves = TrainingCurves.from_history(options.out) if options.resume else TrainingCurves()
    monitor = TrainingMonitor(planned_epochs(options), curves, **({"clock": clock} if clock else {}))
    return start_job(command, load=TrainingOutputs.from_info, monitor=monitor, env=env, on_progress=on_progress,
                     on_log=on_log, on_epoch=on_epoch, on_finished=on_finished, grace_s=grace_s)
