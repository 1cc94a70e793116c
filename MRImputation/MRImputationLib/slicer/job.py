"""One job in a child process, the same way for every kind the modules run: imputation, comparison,
training and the device probe.

A job is a command of the library's command line (`python -m MRImputationLib COMMAND ... --progress
json`; PythonSlicer inside Slicer) run by process.py's `ChildProcess`. `Job` follows it: a panel
polls it from a QTimer (scripts and tests `wait()` for it), `cancel()` ends the whole process tree,
and once the child is done, `load` turns what it reported (its done event's info) into the job's
`outputs`: new nodes, a trained model. A failure becomes `error`, a sentence for the user. Kinds
differ only in their command, their `load`, and an optional `monitor` that watches the events while
the child runs (training's curves and time left).

Also here: the Python, environment and folders a child gets inside Slicer and outside it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generic, Protocol, Sequence, TypeVar

from ..core.errors import InputError
from ..core.events import EpochEvent, LogEvent, ProgressEvent
from .process import DEFAULT_GRACE_S, ChildProcess, RunResult

LIBRARY = "MRImputationLib"
Outputs = TypeVar("Outputs")


def library_command(python: str | os.PathLike, command: str, *arguments: str | os.PathLike) -> list[str]:
    """A command of the process contract, with JSON progress events on stdout.

    >>> library_command("python", "compare", "s.nii.gz", "r.nii.gz")
    ['python', '-m', 'MRImputationLib', 'compare', 's.nii.gz', 'r.nii.gz', '--progress', 'json']
    """
    return [str(python), "-m", LIBRARY, command, *[str(a) for a in arguments], "--progress", "json"]


def lib_folder() -> Path:
    """The folder that holds the MRImputationLib package (put on the child's path)."""
    return Path(__file__).resolve().parents[2]


def child_environment(base: dict | None = None) -> dict[str, str]:
    """The child's environment: `base` (default os.environ) with MRImputationLib importable."""
    env = dict(os.environ if base is None else base)
    folder = str(lib_folder())
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([folder, *[p for p in parts if p != folder]])
    return env


def in_slicer_app() -> bool:
    """True inside the Slicer application (not on slicer-core or a plain Python)."""
    try:
        import slicer
    except ImportError:
        return False
    return getattr(slicer, "app", None) is not None


def python_executable() -> str:
    """PythonSlicer inside Slicer (the child must get Slicer's Python and packages), else this Python."""
    if not in_slicer_app():
        return sys.executable
    found = shutil.which("PythonSlicer")
    if not found:
        raise InputError("PythonSlicer was not found next to Slicer, so no job can start; reinstall Slicer.")
    return found


def base_environment() -> dict:
    """The environment Slicer was started with (PythonSlicer, a launcher, sets up its own paths)."""
    if not in_slicer_app():
        return dict(os.environ)
    import slicer

    return dict(slicer.util.startupEnvironment())


def temporary_root() -> Path:
    """Slicer's temporary folder inside Slicer, else the system's."""
    if not in_slicer_app():
        return Path(tempfile.gettempdir())
    import slicer

    return Path(slicer.app.temporaryPath)


def idle_events() -> Callable[[], None] | None:
    """What a blocking wait runs between polls: Qt event processing inside Slicer, nothing elsewhere."""
    if not in_slicer_app():
        return None
    import slicer

    return slicer.app.processEvents


class Monitor(Protocol):
    """Watches a job's events while its child runs (training.TrainingMonitor: curves, time left)."""

    def on_progress(self, event: ProgressEvent) -> None: ...

    def on_epoch(self, event: EpochEvent) -> None: ...


@dataclass
class Job(Generic[Outputs]):
    """One child process. Poll until `finished`; then `ok`, `cancelled`, `error`, `info` and `outputs`.

    `load(info)` makes the outputs from the done event's info; `work` is a temporary folder removed
    when the job ends, however it ends.

    >>> job = start_job([sys.executable, "-c", 'print(\\'{"event": "done", "answer": 42}\\')'],
    ...                 load=lambda info: info["answer"] + 1)
    >>> job.wait(timeout=60).outputs, job.ok
    (43, True)
    """

    child: ChildProcess
    load: Callable[[dict], Outputs] | None = None
    work: Path | None = None
    monitor: Monitor | None = None
    on_finished: Callable[["Job"], None] | None = None
    result: RunResult | None = None
    info: dict = field(default_factory=dict)
    outputs: Outputs | None = None
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def running(self) -> bool:
        return self.result is None

    @property
    def ok(self) -> bool:
        return self.finished and self.result.ok and not self.error

    @property
    def cancelled(self) -> bool:
        return bool(self.result and self.result.cancelled)

    def poll(self) -> bool:
        """Handle the child's new output; True once it has ended (then `on_finished` has been called)."""
        if self.result is not None:
            return True
        result = self.child.poll()
        if result is None:
            return False
        try:
            if result.ok:
                self.info = dict(result.done.info)
                self.outputs = self.load(self.info) if self.load is not None else None
            elif not result.cancelled:
                self.error = result.message()
        except Exception as error:  # noqa: BLE001 - reported to the user through the job, never lost
            self.error = f"the results could not be loaded: {error}"
        finally:
            self.result = result
            if self.work is not None:
                shutil.rmtree(self.work, ignore_errors=True)
        if self.on_finished is not None:
            self.on_finished(self)
        return True

    def cancel(self, wait: bool = False, quiet: bool = False) -> None:
        """End the child's whole process tree; `poll()` then reports the job as cancelled (`wait`: block till then).

        `quiet` (closing or reloading a panel): no callback runs any more, not even `on_finished`, and
        nothing is raised; the child still gets its grace period to write what it writes on the way out.
        """
        if quiet:
            self.on_finished = None
            self.child.silence()
            try:
                self.cancel(wait=wait)
            except Exception as error:  # noqa: BLE001 - cleanup goes on; the log says what happened
                logging.getLogger(__name__).warning("stopping %s: %s", self.child.command[:4], error)
            return
        self.child.cancel(wait=wait)
        if wait:
            self.poll()

    def wait(self, timeout: float | None = None, idle: Callable[[], None] | None = None) -> "Job[Outputs]":
        """Block until the child ends (callbacks run here; `idle` between polls); InputError with the reason if it failed."""
        self.child.wait(timeout=timeout, idle=idle)
        self.poll()
        if self.error:
            raise InputError(self.error)
        return self


def _both(first: Callable | None, second: Callable | None) -> Callable | None:
    if first is None or second is None:
        return first or second

    def call(event) -> None:
        first(event)
        second(event)

    return call


def start_job(command: Sequence[str | os.PathLike], *, load: Callable[[dict], Outputs] | None = None,
              work: Path | None = None, monitor: Monitor | None = None, env: dict | None = None,
              on_progress: Callable[[ProgressEvent], None] | None = None,
              on_log: Callable[[LogEvent], None] | None = None,
              on_epoch: Callable[[EpochEvent], None] | None = None,
              on_finished: Callable[[Job], None] | None = None,
              grace_s: float = DEFAULT_GRACE_S) -> Job[Outputs]:
    """Start `command` in a child process and return its job at once; `work` is removed if it cannot start.

    The child runs in the library's folder with the library on its path, in Slicer's start-up
    environment inside Slicer (`env` replaces that); the monitor sees each event before the callbacks.
    `grace_s`: how long a cancelled child may take to stop before its process tree is killed.
    """
    child = ChildProcess(command, env=env if env is not None else child_environment(base_environment()),
                         cwd=str(lib_folder()), on_log=on_log,
                         on_progress=_both(monitor.on_progress if monitor else None, on_progress),
                         on_epoch=_both(monitor.on_epoch if monitor else None, on_epoch), grace_s=grace_s)
    try:
        child.start()
    except BaseException:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        raise
    return Job(child, load, work, monitor, on_finished)
