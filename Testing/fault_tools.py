"""Tools for the fault suites (Testing/test_faults_*.py): the command line in this process or in a real child
process, waiting for a child to get somewhere, snapshots of folders, an unwritable place, and an export
held in the middle of writing its zip so a test can signal or kill it there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO
from MRImputationLib.cli import main

ENV = {**os.environ, "PYTHONPATH": str(REPO / "MRImputation")}
LIB = str(REPO / "MRImputation")


def json_events(stdout: str) -> list[dict]:
    """The JSON progress events a command printed."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def cli(capsys, *args: str) -> tuple[int, dict, list[dict]]:
    """`mrimpute ARGS --progress json` in this process: (exit code, last event, all events)."""
    capsys.readouterr()
    code = main([*args, "--progress", "json"])
    printed = json_events(capsys.readouterr().out)
    return code, printed[-1], printed


def child(*args: str, **popen) -> subprocess.Popen:
    """`mrimpute ARGS --progress json` in a child process, its output piped."""
    return subprocess.Popen([sys.executable, "-m", "MRImputationLib", *args, "--progress", "json"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def run_child(*args: str, timeout: float = 300) -> tuple[int, dict]:
    """`mrimpute ARGS` in a child process, to its end: (exit code, last event)."""
    process = child(*args)
    out, err = process.communicate(timeout=timeout)
    printed = json_events(out)
    return process.returncode, (printed[-1] if printed else {"message": err})


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until `path` exists (failing if `process` ends first)."""
    end = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.1)


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its bytes (to show nothing was changed)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hidden(folder: Path) -> list[str]:
    """The hidden names in `folder`: temporaries and lock files."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot write in (permissions, or for root a read-only file system)."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        return locked
    try:
        tempfile.TemporaryFile(dir="/sys").close()
    except OSError:
        return Path("/sys")
    pytest.skip("no folder here is unwritable for root")


ZIP_CHILD = """
import sys, time, zipfile
sys.path.insert(0, {lib!r})
write = zipfile.ZipFile.write
def slow_write(self, *args, **kwargs):  # the zip is being written: hold here so the test can strike
    write(self, *args, **kwargs)
    print("zipping", flush=True)
    time.sleep(120)
zipfile.ZipFile.write = slow_write
from MRImputationLib.cli import main
raise SystemExit(main(["export", {run!r}, {dest!r}, "--no-baseline", "--progress", "json"]))
"""


def exporting_child(run_folder: Path, dest: Path) -> subprocess.Popen:
    """`mrimpute export RUN DEST.zip` in a child process, returned once it is in the middle of writing the zip."""
    process = subprocess.Popen([sys.executable, "-c", ZIP_CHILD.format(lib=LIB, run=str(run_folder), dest=str(dest))],
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return wait_for_line(process, "zipping")


def wait_for_line(process: subprocess.Popen, text: str) -> subprocess.Popen:
    """Read the child's output until a line holding `text` (failing if it ends first); returns the child."""
    for line in process.stdout:
        if text in line:
            return process
    raise AssertionError(process.communicate())


def small_disk(limit: int = 40_000):
    """A preexec_fn: the child cannot write a file larger than `limit` bytes, as on a disk that fills up."""
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


HOLDER = """
import sys, time
sys.path.insert(0, {lib!r})
from MRImputationLib.core.atomic import temporary_sibling
print(temporary_sibling({path!r}, directory=False), flush=True)
time.sleep(120)
"""


def temporary_holder(path: Path) -> tuple[subprocess.Popen, Path]:
    """A child process that made a temporary for `path` (core/atomic.py) and is still writing it: (it, the temporary)."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER.format(lib=LIB, path=str(path))], env=ENV,
                               stdout=subprocess.PIPE, text=True)
    return process, Path(process.stdout.readline().strip())
