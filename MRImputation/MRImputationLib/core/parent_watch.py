"""Worker processes that end when their parent does, even when the parent is killed with kill -9.

A process pool's workers (`preprocess --jobs N`) are separate processes: if their parent is killed
outright, nothing tells them, and they would go on using every core for subjects nobody will
collect. `exit_with_parent(parent_pid)`, run first thing in each worker (a pool's `initializer`):

* makes SIGTERM raise SystemExit in the worker, so an atomic write under way removes its
  temporary on the way out (core/atomic.py) instead of leaving it;
* on Linux asks the kernel to send SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG, through
  ctypes), which is immediate;
* everywhere, starts a daemon thread that checks every half second whether the parent is still
  there (the worker's parent pid changed, or the parent process is gone) and then sends SIGTERM to
  its own process; if the worker is still alive `grace` seconds later (SIGTERM's handler only runs
  between Python bytecodes, so a long ITK call delays it), it ends with os._exit.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from .errors import EXIT_CANCELLED
from .locking import process_alive

PR_SET_PDEATHSIG = 1


def _stop(signum, frame) -> None:
    raise SystemExit(EXIT_CANCELLED)


def _ask_kernel(signum: int) -> bool:
    """Linux: deliver `signum` to this process when its parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def parent_gone(parent_pid: int) -> bool:
    """Whether the process that started this one has ended (reparented, or no longer running)."""
    return os.getppid() != parent_pid or not process_alive(parent_pid)


def _watch(parent_pid: int, grace: float, poll: float) -> None:
    while not parent_gone(parent_pid):
        time.sleep(poll)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace)
    os._exit(EXIT_CANCELLED)


def exit_with_parent(parent_pid: int, grace: float = 3.0, poll: float = 0.5) -> None:
    """Make this (worker) process end when process `parent_pid` ends; see the module's docstring."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
    _ask_kernel(signal.SIGTERM)
    if parent_gone(parent_pid):  # it died before the kernel was asked to tell
        os._exit(EXIT_CANCELLED)
    threading.Thread(target=_watch, args=(parent_pid, grace, poll), name="exit-with-parent", daemon=True).start()
