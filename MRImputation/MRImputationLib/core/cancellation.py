"""How a run is asked to stop: SIGINT, SIGTERM, SIGBREAK (Windows) or a stop file become `Cancelled`,
so every run unwinds through its atomic writers (the trainer writes its checkpoint on the way out).

The Slicer modules ask a child to stop in two ways at once, because neither reaches it everywhere
(slicer/process.py): a signal to its process group (SIGTERM on POSIX; CTRL_BREAK_EVENT on Windows,
which only reaches a child that shares the caller's console, and Slicer has none) and a stop file,
whose path the child finds in $MRIMPUTATION_STOP_FILE: the file appearing is a stop request on every
platform, through any launcher. Only the first request raises; later ones (the other way arriving,
a repeated SIGTERM) are ignored while the run unwinds, so they cannot cut a checkpoint being written.
A second Ctrl-C (SIGINT) still interrupts at once.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import threading
from typing import Iterator

from .errors import Cancelled

STOP_FILE_ENV = "MRIMPUTATION_STOP_FILE"
STOP_FILE_POLL_S = 0.2


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that ask a run to stop: SIGINT, SIGTERM, and SIGBREAK where it exists (Windows)."""
    return (signal.SIGINT, signal.SIGTERM, *([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else []))


def _watch_stop_file(path: str, done: threading.Event, requested: list) -> None:
    """Until `done`: when `path` appears, deliver a SIGTERM-like stop request to the main thread (once)."""
    while not done.wait(STOP_FILE_POLL_S):
        if os.path.exists(path):
            if not requested:
                _thread.interrupt_main(signal.SIGTERM)  # runs the handler below in the main thread
            return


@contextlib.contextmanager
def cancel_on_signals(stop_file: str | None = None) -> Iterator[None]:
    """Within the block, the first stop request raises `Cancelled` in the main thread.

    `stop_file` (default $MRIMPUTATION_STOP_FILE): a path whose appearance is a stop request.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    requested: list[str] = []

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if requested:
            if signum == signal.SIGINT and requested[0] == "SIGINT":
                raise KeyboardInterrupt("interrupted again while stopping")
            return  # already stopping: let the run finish what it writes on the way out
        requested.append(name)
        raise Cancelled(f"stopped by signal {name}")

    previous = {s: signal.signal(s, handler) for s in stop_signals()}
    done = threading.Event()
    stop_file = stop_file if stop_file is not None else os.environ.get(STOP_FILE_ENV)
    if stop_file:
        threading.Thread(target=_watch_stop_file, args=(stop_file, done, requested), daemon=True,
                         name="mrimputation-stop-file").start()
    try:
        yield
    finally:
        done.set()
        for s, h in previous.items():
            signal.signal(s, h)
