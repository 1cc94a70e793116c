"""A full disk, said plainly: which folder, how much the write needed and how much is free.

Writers fail on a full disk in their own words: Python's OSError ENOSPC ("No space left on
device"), torch.save's "[enforce fail at inline_container.cc] unexpected pos 576 vs 534", ITK's
"could not write". `explain_disk_full` turns each into `DiskFull`, an InputError (exit code 2)
whose message names the folder, the space needed and the space free, and says what to do. A
RuntimeError is taken for a full disk when the free space left after the failed write (its
temporary is already removed by then) is below what the write needed; anything else is re-raised
as it was.

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> with explain_disk_full(folder + "/a.bin", 10):
...     raise OSError(28, "No space left on device")
Traceback (most recent call last):
...
MRImputationLib.core.disk.DiskFull: ...: the disk is full: writing a.bin needs about 1 MB ...
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Iterator

from .errors import InputError

FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
MB = 1024 * 1024


class DiskFull(InputError):
    """A write failed because its disk (or quota) is full; the message says where and how much is needed."""


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system that holds `path` (or its nearest existing parent); None when unknown."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def _mb(size: int) -> int:
    """Whole megabytes, rounded up (at least 1)."""
    return max(1, -(-int(size) // MB))


def disk_full(path: str | os.PathLike, needed: int, then: str = "") -> DiskFull:
    """The DiskFull error for writing `needed` bytes to `path`; `then` adds what to do next (e.g. --resume)."""
    path = Path(path)
    free = free_bytes(path.parent)
    has = f"{free / MB:,.1f} MB are free there" if free is not None else "the free space there is unknown"
    short = max(needed - (free or 0), 0) + 64 * MB  # a margin: other files of the run grow too
    return DiskFull(f"{path.parent}: the disk is full: writing {path.name} needs about {_mb(needed):,} MB "
                    f"and {has}. Free at least {_mb(short):,} MB there (or choose a folder on another disk) and "
                    f"run it again{'; ' + then if then else ''}. Nothing half-written was left.")


@contextlib.contextmanager
def explain_disk_full(path: str | os.PathLike, needed: int, then: str = "") -> Iterator[None]:
    """Run a write of about `needed` bytes to `path`; a full disk becomes DiskFull (see the module's docstring)."""
    try:
        yield
    except OSError as error:
        if error.errno in FULL_ERRNOS:
            raise disk_full(path, needed, then) from None
        raise
    except RuntimeError:
        free = free_bytes(Path(path).parent)
        if free is not None and free < needed:
            raise disk_full(path, needed, then) from None
        raise
