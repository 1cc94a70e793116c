"""SIGINT/SIGTERM turn into `Cancelled`, so every run unwinds through its atomic writers."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from .errors import Cancelled


@contextlib.contextmanager
def cancel_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise `Cancelled` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Cancelled(f"stopped by signal {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
