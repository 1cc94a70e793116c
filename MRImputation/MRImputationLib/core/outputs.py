"""Where a command writes, checked before it reads anything or does any work.

Every command that writes (impute, preprocess, train, evaluate, export, compare, phantom, demo)
first checks its output: not a file where a folder goes, no file among its parents, somewhere this
process can write (tried, so it holds for root and read-only mounts too), and not the input itself
or inside it. An output that is written whole and renamed into place replaces only what the same
command wrote before (`check_replaceable`): a folder holding anything else is refused, never emptied.
Each refusal is an InputError (exit 2) naming the output, what is wrong and what to do.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import InputError

# Files a desktop leaves in any folder it shows; replacing a folder that holds only these loses nothing.
DESKTOP_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


def _nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable(folder: Path, option: str, path: Path) -> None:
    """InputError unless a file can be created in `folder` (tried: os.access is wrong for root and read-only mounts)."""
    try:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"no write permission on {folder}")
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise InputError(f"{option} {path}: nothing can be written in {folder} ({reason}); choose a folder you can "
                         "write to, or change its permissions.") from None


def check_output_folder(path: str | os.PathLike, option: str = "--out", *, replaced_whole: bool = False) -> Path:
    """InputError unless `path` can be written as a folder; returns it. Nothing is created.

    `replaced_whole`: the folder is written beside it and renamed into place, so its parent must be writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path}: this is a file, not a folder; give a folder (new or empty, it is created), "
                         "or move the file away.")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise InputError(f"{option} {path}: {existing} is a file, so no folder can be made inside it; give another "
                         "path.")
    _check_writable(existing, option, path)
    if replaced_whole and existing == Path(os.path.abspath(path)):
        _check_writable(_nearest_existing(existing.parent), option, path)
    return path


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """InputError unless a file can be written at `path` (replacing a file there); returns it."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path}: this is a folder, not a file; give a file name, or move the folder away.")
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise InputError(f"{option} {path}: {existing} is a file, so nothing can be written inside it; give another "
                         "path.")
    _check_writable(existing, option, path)
    return path


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_apart(out: str | os.PathLike, source: str | os.PathLike, out_option: str, source_option: str) -> None:
    """InputError when the output is the input, lies inside it, or holds it (links resolved)."""
    out_real, source_real = Path(out).resolve(), Path(source).resolve()
    if _inside(out_real, source_real):
        where = "is" if out_real == source_real else "lies inside"
        raise InputError(f"{out_option} {out}: it {where} {source_option} {source} ({source_real}); writing there "
                         "would overwrite the input. Give an output folder outside the input.")
    if _inside(source_real, out_real):
        raise InputError(f"{out_option} {out}: it holds {source_option} {source} ({source_real}); writing there could "
                         "replace the input. Give an output folder outside the input.")


def entries(folder: str | os.PathLike) -> list[str]:
    """The names in `folder` (none when it does not exist), without desktop litter."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(name for name in os.listdir(folder) if name not in DESKTOP_LITTER)


def check_replaceable(folder: str | os.PathLike, option: str, owned: Callable[[Path], bool], what: str,
                      replace: bool = True, replace_hint: str = "") -> bool:
    """InputError unless `folder` may be replaced whole by `what`: absent, empty, or holding only what `owned`
    recognizes as `what`'s own earlier output (then only with `replace`). Returns whether it holds such output."""
    folder = Path(folder)
    names = entries(folder)
    if not names:
        return False
    foreign = [n for n in names if not owned(folder / n)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise InputError(f"{option} {folder}: it holds files that {what} did not write ({shown}); {what} writes a "
                         "whole folder and would delete them. Give a new or empty folder.")
    if not replace:
        hint = replace_hint or "give a new or empty folder"
        raise InputError(f"{option} {folder}: it already holds an earlier {what} result; {hint}.")
    return True


OWNER_FILE = ".mrimputation-output.json"  # marks a folder a command writes into piece by piece


def _owner(folder: Path) -> str | None:
    import json

    try:
        return str(json.loads((folder / OWNER_FILE).read_text(encoding="utf-8")).get("written_by"))
    except (OSError, ValueError, AttributeError):
        return None


def check_owned_folder(folder: str | os.PathLike, option: str, command: str, signs: tuple[str, ...] = ()) -> None:
    """InputError unless `command` may write into `folder` and replace what it holds: absent or empty, marked as
    `command`'s (mark_owned_folder), or holding one of `signs` (files only `command` writes, e.g. manifest.json)."""
    folder = Path(folder)
    names = entries(folder)
    if not names or _owner(folder) == command or any((folder / s).is_file() for s in signs):
        return
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    raise InputError(f"{option} {folder}: this folder holds files that `mrimpute {command}` did not write ({shown}); "
                     f"it would replace some of them. Give a new or empty folder, or one an earlier `mrimpute "
                     f"{command}` wrote.")


def mark_owned_folder(folder: str | os.PathLike, command: str) -> Path:
    """Create `folder` (if needed) and mark it as `command`'s output, so a rerun after a crash may write into it."""
    from .atomic import write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if _owner(folder) != command:
        write_text(folder / OWNER_FILE, f'{{"written_by": "{command}"}}\n')
    return folder
