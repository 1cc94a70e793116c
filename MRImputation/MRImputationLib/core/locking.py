"""Who is writing a folder: a lock file per output, and whether the process that left something is gone.

A lock is a file created with O_EXCL (so exactly one process gets it) that holds the owner's pid,
host and start time; it is removed when the block ends, however it ends. A process killed with
kill -9 cannot remove it: the next one finds its pid dead (or reused by a process that started
later), takes the lock over and says so in the log. A lock held by a live process is an InputError
naming the folder and that process. `stale_owner` is also how core/atomic.py tells a temporary
left by a killed process from one still being written.

>>> import tempfile, pathlib
>>> lock_file = pathlib.Path(tempfile.mkdtemp()) / ".out.lock"
>>> with FolderLock(lock_file, "out"):
...     lock_file.exists()
True
>>> lock_file.exists()
False
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from .errors import InputError


def _alive_windows(pid: int) -> bool:
    """Whether `pid` runs, on Windows (os.kill(pid, 0) would terminate it there)."""
    import ctypes

    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    code = ctypes.c_ulong()
    try:
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _linux_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists and is not a zombie (a killed child nobody has waited for yet)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    fields = _linux_stat(pid)
    return not (fields and fields[0] == "Z")


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), where /proc tells; else None."""
    fields = _linux_stat(pid)
    try:
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, TypeError, IndexError, ValueError, StopIteration):
        return None


def stale_owner(pid: int, since: float) -> bool:
    """True when the process `pid`, which made something at time `since`, is gone: no such process,
    or the pid now belongs to a process that started after that (the pid was reused)."""
    if not process_alive(pid):
        return True
    started = process_start_time(pid)
    return started is not None and started > since + 2.0


class FolderLock:
    """`with FolderLock(lock_file, what, log):` the block runs holding `lock_file` (created with O_EXCL).

    `what` names the locked output in messages ("--out runs/a"); `log` receives the line that
    says a stale lock was taken over."""

    def __init__(self, lock_file: str | os.PathLike, what: str, log: Callable[[str], None] | None = None) -> None:
        self.path, self.what, self.log = Path(lock_file), what, log or (lambda message: None)
        self.held = False

    def _record(self) -> bytes:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                           "command": " ".join([Path(sys.argv[0]).name or "python", *sys.argv[1:2]])}).encode()

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(self._record())
        return True

    def _owner(self) -> tuple[dict, bytes]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}, b""
        try:
            owner = json.loads(raw)
        except ValueError:
            owner = {}
        return (owner if isinstance(owner, dict) else {}), raw

    def _is_stale(self, owner: dict) -> bool:
        if owner.get("host", socket.gethostname()) != socket.gethostname():
            return False  # another machine's process: it cannot be checked from here
        try:
            if "pid" not in owner:  # empty or damaged: its writer died between creating and filling it
                return time.time() - self.path.stat().st_mtime > 10
            since = float(owner.get("started") or self.path.stat().st_mtime)
            return stale_owner(int(owner["pid"]), since)
        except (KeyError, TypeError, ValueError, OSError):
            return False

    def acquire(self) -> None:
        """Take the lock, or raise InputError naming the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._create():
                self.held = True
                return
            owner, raw = self._owner()
            if self.path.exists() and self._is_stale(owner):
                if self._owner()[1] == raw:  # still the same stale lock: nobody took it over meanwhile
                    self.path.unlink(missing_ok=True)
                    self.log(f"{self.what}: took over the lock {self.path} left by process {owner.get('pid', '?')}, "
                             "which is no longer running")
        owner, _ = self._owner()
        who = (f"process {owner.get('pid')} on {owner.get('host')} ({owner.get('command', 'mrimpute')}), since "
               f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(owner.get('started', 0)))}"
               if owner else "another process")
        raise InputError(f"{self.what}: {who} is writing it (lock file {self.path}). Wait for it to finish, or "
                         f"choose another folder; if that process is surely gone, delete {self.path}.")

    def release(self) -> None:
        if self.held:
            owner, _ = self._owner()
            if owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def sibling_lock(folder: str | os.PathLike) -> Path:
    """The lock file of an output written whole (and renamed into place): `.<name>.lock` beside it."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"
