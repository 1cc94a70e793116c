"""Atomic outputs: write into a temporary sibling, then rename, so nothing is ever half-written.

Temporaries are named `.<name>.tmp-<pid>-<host>-<random>`: when a process is killed (kill -9) before
it can remove its own, the next write into that folder removes every such temporary whose process
is gone (core/locking.py `stale_owner`), and nothing else. Folders are created with the mode the
umask gives (not mkdtemp's private 0700), files with the mode a plain open() gives. A folder
replacing an existing one is swapped in with one atomic exchange where the system has it (Linux),
so there is no moment without either the old or the new folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import InputError
from .locking import stale_owner

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:4]
_TEMPORARY = re.compile(r"^\..*\.tmp-(?P<pid>\d+)-(?P<host>[0-9a-f]{4})-[a-z0-9_]{8}")


def current_umask() -> int:
    """The process's umask, read without changing it where /proc tells (no window for other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def clean_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries in `folder` that processes of this machine left when they were killed; return them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if not match or match["host"] != _HOST:
            continue
        try:
            stale = stale_owner(int(match["pid"]), entry.stat(follow_symlinks=False).st_mtime)
        except OSError:
            continue
        if stale:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def temporary_sibling(path: str | os.PathLike, directory: bool) -> Path:
    """A new temporary file or folder beside `path`, named as ours (after removing stale ones there)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path.parent)
    # Keep the real suffix (e.g. ".nii.gz") so writers that pick a format by extension still work.
    suffix = "".join(path.suffixes) if not directory else ""
    prefix = f".{path.name.split('.')[0]}.tmp-{os.getpid()}-{_HOST}-"
    umask = current_umask()
    if directory:
        name = tempfile.mkdtemp(prefix=prefix, dir=path.parent)
        os.chmod(name, 0o777 & ~umask)  # mkdtemp makes it private (0700)
        return Path(name)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~umask)  # mkstemp makes it private (0600)
    return Path(name)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_file(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    tmp = temporary_sibling(path, directory=False)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; on success it becomes `path` (replacing an old folder whole).

    A link is followed (the folder it points to is replaced); a file where the folder goes is never
    moved aside: InputError, and nothing is written."""
    path = Path(os.path.abspath(path))  # "." has no sibling; its absolute name does
    path = path.resolve() if path.is_symlink() else path
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: a file is where this folder is to be written; move it away or choose another "
                         "path.")
    tmp = temporary_sibling(path, directory=True)
    try:
        yield tmp
        if not path.exists():
            os.replace(tmp, path)
        elif _exchange(tmp, path):
            shutil.rmtree(tmp, ignore_errors=True)  # it now holds the old folder
        else:
            old = temporary_sibling(path, directory=True)
            old.rmdir()
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically and return its path."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
