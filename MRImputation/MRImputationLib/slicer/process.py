"""A child process that speaks the command line's JSON progress contract, without Qt.

The Slicer modules run every long job (`mrimpute impute`, `compare`, `train`) through `ChildProcess`,
wrapped in job.py's `Job`: the child starts in its own process group (session on POSIX, new
process group on Windows), two reader threads queue its stdout/stderr lines, and `poll()`, called
from the caller's thread (a `qt.QTimer` in Slicer, a loop in scripts and tests), turns them into
the typed events of core/events.py and calls back. `cancel()` ends the whole process tree:
PythonSlicer is a launcher, so killing only the process we started would leave the real Python
worker running. It first asks (a signal to the group, and the stop file core/cancellation.py
watches, which reaches the worker on Windows too), and kills what still runs `grace_s` later: a
training child gets long enough to write its checkpoint.

>>> event = parse_event('{"event": "progress", "stage": "synthesize", "fraction": 0.5, "eta_s": 12}')
>>> event.stage, event.fraction, event.eta_s
('synthesize', 0.5, 12.0)
>>> parse_event("Warning: not JSON").message
'Warning: not JSON'
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..core.cancellation import STOP_FILE_ENV
from ..core.errors import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK
from ..core.events import DoneEvent, EpochEvent, ErrorEvent, Event, LogEvent, ProgressEvent, event_from_dict

TAIL_LINES = 40
READER_GRACE_S = 2.0
DEFAULT_GRACE_S = 5.0  # from the stop request to SIGKILL / taskkill /F


def parse_event(line: str, stream: str = "stdout") -> Event:
    """One output line as an event of core/events.py; anything that is not a contract event is a `LogEvent`."""
    text = line.rstrip("\r\n")
    if stream == "stdout" and text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        event = event_from_dict(data) if isinstance(data, dict) else None
        if event is not None:
            return event
    return LogEvent(text, stream)


@dataclass
class RunResult:
    """How a child ended: its exit code, its last done/error event, and whether we cancelled it."""

    exit_code: int
    done: DoneEvent | None = None
    error: ErrorEvent | None = None
    cancelled: bool = False
    tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK and not self.cancelled and self.done is not None

    def message(self) -> str:
        """What went wrong, in words a user can act on."""
        if self.ok:
            return "done"
        if self.cancelled:
            return "cancelled; no partial output was kept"
        if self.error is not None and self.error.message:
            return self.error.message
        last = "\n".join(self.tail[-8:])
        return (f"the process ended with exit code {self.exit_code} without saying why. Its last output:\n{last}"
                if last else f"the process ended with exit code {self.exit_code} and printed nothing.")


class ChildProcess:
    """Runs `command`, parses its JSON events and calls back from `poll()` on the caller's thread.

    >>> import sys
    >>> child = ChildProcess([sys.executable, "-c", 'print(\\'{"event": "done", "answer": 42}\\')'])
    >>> child.start().wait().done.info
    {'answer': 42}
    """

    def __init__(self, command: Sequence[str], env: dict | None = None, cwd: str | os.PathLike | None = None,
                 on_progress: Callable[[ProgressEvent], None] | None = None,
                 on_log: Callable[[LogEvent], None] | None = None,
                 on_epoch: Callable[[EpochEvent], None] | None = None,
                 on_done: Callable[[DoneEvent], None] | None = None,
                 on_error: Callable[[ErrorEvent], None] | None = None,
                 on_finished: Callable[[RunResult], None] | None = None,
                 grace_s: float = DEFAULT_GRACE_S) -> None:
        self.command = [str(c) for c in command]
        self.grace_s = grace_s
        self.stop_file = os.path.join(tempfile.gettempdir(), f"mrimputation-stop-{uuid.uuid4().hex}")
        self.env = env
        self.cwd = cwd
        self.on_progress, self.on_log, self.on_epoch = on_progress, on_log, on_epoch
        self.on_done, self.on_error = on_done, on_error
        self.on_finished = on_finished
        self.process: subprocess.Popen | None = None
        self.result: RunResult | None = None
        self.last_progress: ProgressEvent | None = None
        self._queue: queue.Queue = queue.Queue()
        self._readers: list[threading.Thread] = []
        self._done: DoneEvent | None = None
        self._error: ErrorEvent | None = None
        self._tail: list[str] = []
        self._cancelled = False
        self._killed = False
        self._kill_deadline = 0.0
        self._exited_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        """True from `start()` until `poll()` has reported the end."""
        return self.process is not None and self.result is None

    def start(self) -> "ChildProcess":
        if self.process is not None:
            raise RuntimeError("this child process was already started; make a new ChildProcess to run again")
        env = {**(self.env if self.env is not None else os.environ), "PYTHONUNBUFFERED": "1",
               STOP_FILE_ENV: self.stop_file}
        options: dict = {}
        if os.name == "nt":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            options["start_new_session"] = True  # its own process group: cancel() reaches every descendant
        self.process = subprocess.Popen(self.command, env=env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        encoding="utf-8", errors="replace", bufsize=1, **options)
        for stream, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr")):
            reader = threading.Thread(target=self._read, args=(stream, name), daemon=True,
                                      name=f"mrimputation-{name}-{self.process.pid}")
            reader.start()
            self._readers.append(reader)
        return self

    def _read(self, stream, name: str) -> None:
        for line in iter(stream.readline, ""):
            self._queue.put((name, line))
        stream.close()

    def poll(self) -> RunResult | None:
        """Handle the lines that arrived; the RunResult once the child has ended and all output is read."""
        if self.process is None:
            raise RuntimeError("start() the child process first")
        if self.result is not None:
            return self.result
        while True:
            try:
                name, line = self._queue.get_nowait()
            except queue.Empty:
                break
            self._dispatch(parse_event(line, name))
        self._escalate()
        if self.process.poll() is None:
            return None
        self._exited_at = self._exited_at or time.monotonic()
        # Descendants holding the pipes outlive the child (a launcher's worker cleaning up after a cancel);
        # wait for them, but not forever: a detached grandchild may keep the pipes open.
        limit = self._kill_deadline if self._cancelled else self._exited_at
        if any(r.is_alive() for r in self._readers) and time.monotonic() < limit + READER_GRACE_S:
            return None
        while not self._queue.empty():
            name, line = self._queue.get_nowait()
            self._dispatch(parse_event(line, name))
        if self._cancelled:
            kill_tree(self.process)  # whatever of the group is still alive
        _remove(self.stop_file)
        code = self.process.returncode
        error = self._error
        if not self._cancelled and code != EXIT_OK and error is None:
            error = ErrorEvent(RunResult(code, tail=self._tail).message(), code if code > 0 else EXIT_FAILED)
            self._call(self.on_error, error)
        self.result = RunResult(code, self._done if code == EXIT_OK else None, error, self._cancelled, list(self._tail))
        self._call(self.on_finished, self.result)
        return self.result

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, ProgressEvent):
            self.last_progress = event
            self._call(self.on_progress, event)
        elif isinstance(event, LogEvent):
            if event.message.strip():
                self._tail = (self._tail + [event.message])[-TAIL_LINES:]
            self._call(self.on_log, event)
        elif isinstance(event, EpochEvent):
            self._call(self.on_epoch, event)
        elif isinstance(event, DoneEvent):
            self._done = event
            self._call(self.on_done, event)
        elif isinstance(event, ErrorEvent):
            self._error = event
            if not self._cancelled:
                self._call(self.on_error, event)

    @staticmethod
    def _call(callback, event) -> None:
        if callback is not None:
            callback(event)

    def wait(self, timeout: float | None = None, interval: float = 0.05,
             idle: Callable[[], None] | None = None) -> RunResult:
        """Block until the child ends (callbacks still run here); `idle` runs between polls, e.g. processEvents."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = self.poll()
            if result is not None:
                return result
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.command[0]} still runs after {timeout} s")
            if idle is not None:
                idle()
            time.sleep(interval)

    def cancel(self, grace: float | None = None, wait: bool = False) -> None:
        """Stop the child and all its descendants without blocking.

        The stop request goes to the whole process group (SIGTERM on POSIX, CTRL_BREAK_EVENT on
        Windows) and through the stop file: the CLI unwinds (the trainer saves a checkpoint) and
        exits 130, a launcher just ends. `poll()` kills the group if anything of it still runs
        `grace` seconds (default: this child's `grace_s`) later. With `wait=True` this returns only
        when the child has ended.
        """
        if self.process is None or self.result is not None:
            return
        if not self._cancelled:
            self._cancelled = True
            self._kill_deadline = time.monotonic() + (self.grace_s if grace is None else grace)
            _touch(self.stop_file)
            terminate_tree(self.process)
        if wait:
            self.wait()

    def silence(self) -> None:
        """Call back nothing any more (a panel being closed or reloaded: its widgets are going away)."""
        self.on_progress = self.on_log = self.on_epoch = self.on_done = self.on_error = self.on_finished = None

    def _escalate(self) -> None:
        if self._cancelled and not self._killed and time.monotonic() > self._kill_deadline:
            kill_tree(self.process)
            self._killed = True


def terminate_tree(process: subprocess.Popen) -> None:
    """Ask `process` (started in its own group) and its descendants to stop; they may take their time.

    Windows: CTRL_BREAK_EVENT to its process group (the CLI treats SIGBREAK like SIGTERM); it only
    arrives when this process shares the child's console, so the stop file (see `cancel`) is what
    reaches a child of Slicer. Nothing is killed here: `kill_tree` does that after the grace period.
    """
    if os.name == "nt":
        try:
            os.kill(process.pid, signal.CTRL_BREAK_EVENT)
        except OSError:
            pass  # no shared console: the stop file asks instead
    else:
        _signal_group(process.pid, signal.SIGTERM)


def kill_tree(process: subprocess.Popen) -> None:
    """End `process` and every process left in its group, at once."""
    if os.name == "nt":
        # taskkill /T walks the tree from the launcher; /F because console programs ignore WM_CLOSE.
        subprocess.run(["taskkill", "/PID", str(process.pid), "/T", "/F"], capture_output=True, check=False)
        if process.poll() is None:
            process.kill()
    else:
        # The group outlives its leader while any member lives (e.g. a launcher's worker).
        _signal_group(process.pid, signal.SIGKILL)


def _touch(path: str) -> None:
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError:
        pass  # the signal still asks


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass


def cancelled_exit_codes() -> tuple[int, ...]:
    """Exit codes a cancelled child may end with: 130 (it cleaned up) or killed by a signal."""
    return (EXIT_CANCELLED, -signal.SIGTERM, -signal.SIGKILL) if os.name != "nt" else (EXIT_CANCELLED, 1)
