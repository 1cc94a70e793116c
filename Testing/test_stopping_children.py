"""Stopping a child the way the panels do, with real child processes: the trainer gets to finish its
checkpoint, the stop file reaches a child where no signal does (Windows), a second stop request does not
cut the save short, and stopping during cleanup or after a timeout is quiet and keeps the right error."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from MRImputationLib.core.cancellation import STOP_FILE_ENV, cancel_on_signals
from MRImputationLib.core.errors import EXIT_CANCELLED, Cancelled
from MRImputationLib.slicer import process
from MRImputationLib.slicer.job import child_environment, lib_folder, start_job
from MRImputationLib.slicer.process import DEFAULT_GRACE_S, ChildProcess
from MRImputationLib.slicer.training_decisions import TrainingOptions
from MRImputationLib.slicer.training_job import TRAINING_GRACE_S, start_training

POSIX = pytest.mark.skipif(os.name == "nt", reason="SIGTERM handlers and /bin/sh are POSIX")
PROGRESS = 'print(\'{"event": "progress", "stage": "train", "fraction": 0.1}\', flush=True)'

# A trainer in miniature: on SIGTERM it takes a few seconds to write its checkpoint, then exits 130.
SLOW_SAVER = textwrap.dedent(f"""
    import pathlib, signal, sys, time
    def save(signum, frame):
        time.sleep(3)  # the checkpoint being written
        pathlib.Path(sys.argv[1]).write_text("checkpoint")
        sys.exit(130)
    signal.signal(signal.SIGTERM, save)
    {PROGRESS}
    time.sleep(60)
""")

# A command-line child: the library's own stop handling around the work, and a slow save inside it, as
# the trainer saves inside `mrimpute train` (cli.run wraps the whole command in cancel_on_signals).
CLI_LIKE = textwrap.dedent(f"""
    import pathlib, sys, time
    from MRImputationLib.core.cancellation import cancel_on_signals
    from MRImputationLib.core.errors import Cancelled
    try:
        with cancel_on_signals():
            try:
                {PROGRESS}
                for _ in range(1200):
                    time.sleep(0.05)
            except Cancelled as error:
                for _ in range(30):  # 1.5 s of saving, in small steps: a second request would land in here
                    time.sleep(0.05)
                pathlib.Path(sys.argv[1]).write_text(str(error))
                raise
    except Cancelled:
        sys.exit(130)
""")


def _wait_for_progress(child: ChildProcess) -> None:
    deadline = time.monotonic() + 60
    while child.last_progress is None:
        assert child.poll() is None, child.result.message()
        assert time.monotonic() < deadline
        time.sleep(0.02)


@POSIX
def test_a_stopped_training_child_gets_the_long_grace_and_finishes_its_checkpoint(tmp_path):
    out = tmp_path / "last.pt"
    job = start_training(TrainingOptions(str(tmp_path / "data"), str(tmp_path / "run"), preset="tiny"),
                         command=[sys.executable, "-c", SLOW_SAVER, str(out)])
    assert job.child.grace_s == TRAINING_GRACE_S > DEFAULT_GRACE_S
    _wait_for_progress(job.child)
    job.cancel()
    job.wait(timeout=60)
    assert job.cancelled and job.result.exit_code == EXIT_CANCELLED
    assert out.read_text() == "checkpoint"


@POSIX
def test_a_short_grace_kills_the_same_child_before_it_has_written(tmp_path):
    out = tmp_path / "last.pt"
    child = ChildProcess([sys.executable, "-c", SLOW_SAVER, str(out)], grace_s=0.5).start()
    _wait_for_progress(child)
    child.cancel()
    result = child.wait(timeout=30)
    assert result.cancelled and result.exit_code == -signal.SIGKILL
    assert not out.exists()


def test_the_stop_file_alone_stops_a_command_line_child(tmp_path, monkeypatch):
    """What reaches a child of Slicer on Windows, where no console signal does: here no signal is sent."""
    monkeypatch.setattr(process, "terminate_tree", lambda popen: None)
    out = tmp_path / "stopped.txt"
    child = ChildProcess([sys.executable, "-c", CLI_LIKE, str(out)], env=child_environment(), cwd=str(lib_folder()),
                         grace_s=30).start()
    _wait_for_progress(child)
    child.cancel()
    result = child.wait(timeout=60)
    assert result.exit_code == EXIT_CANCELLED and "stopped by signal" in out.read_text()
    assert not Path(child.stop_file).exists()  # removed once the child is done


@POSIX
def test_a_second_stop_request_does_not_cut_the_save_short(tmp_path):
    out = tmp_path / "stopped.txt"
    child = ChildProcess([sys.executable, "-c", CLI_LIKE, str(out)], env=child_environment(), cwd=str(lib_folder()),
                         grace_s=30).start()
    _wait_for_progress(child)
    child.cancel()  # SIGTERM and the stop file: two requests already
    time.sleep(0.5)
    os.killpg(child.pid, signal.SIGTERM)  # and a third, while it saves
    result = child.wait(timeout=60)
    assert result.exit_code == EXIT_CANCELLED and out.read_text() == "stopped by signal SIGTERM"


@POSIX
def test_in_process_the_first_request_raises_and_later_ones_are_ignored():
    with pytest.raises(Cancelled, match="SIGTERM"):
        with cancel_on_signals(stop_file=""):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):
                time.sleep(0.01)
    with cancel_on_signals(stop_file=""):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):
                time.sleep(0.01)
        except Cancelled:
            os.kill(os.getpid(), signal.SIGTERM)  # while unwinding: ignored
            for _ in range(20):
                time.sleep(0.01)


def test_in_process_a_stop_file_appearing_raises_cancelled(tmp_path):
    stop = tmp_path / "stop"
    with pytest.raises(Cancelled):
        with cancel_on_signals(stop_file=str(stop)):
            stop.touch()
            for _ in range(200):
                time.sleep(0.02)


def test_the_child_is_told_where_its_stop_file_is(tmp_path):
    child = ChildProcess([sys.executable, "-c", f"import os; print(os.environ[{STOP_FILE_ENV!r}])"]).start()
    result = child.wait(timeout=30)
    assert result.exit_code == 0 and result.tail == [child.stop_file]


def test_a_quiet_cancel_calls_nothing_back_and_raises_nothing():
    calls = []

    def explode(*_):
        calls.append("called")
        raise RuntimeError("the panel's widgets are gone")

    loop = f"import time\nwhile True:\n    {PROGRESS}\n    time.sleep(0.05)\n"
    job = start_job([sys.executable, "-c", loop], on_progress=explode, on_finished=explode, on_log=explode)
    time.sleep(0.5)  # progress lines are waiting in the queue
    job.cancel(wait=True, quiet=True)
    assert job.finished and job.cancelled and calls == []


def test_panel_cleanup_runs_every_step_even_when_one_fails():
    """PanelBase.cleanup's order and robustness (the logic; the Qt side runs only in Slicer)."""
    from MRImputationLib.slicer.panel_base import PanelBase

    steps = []
    loop = "import time\nwhile True:\n    time.sleep(0.05)\n"
    panel = object.__new__(PanelBase)
    panel.job = start_job([sys.executable, "-c", loop], on_finished=lambda job: steps.append("on_finished"))
    panel._device_probe = start_job([sys.executable, "-c", loop])
    panel.timer = type("Timer", (), {"stop": lambda self: steps.append("timer stopped")})()

    def broken_widget() -> None:
        raise RuntimeError("a widget is gone")

    panel.cleanupMore = broken_widget
    panel.setParameterNode = lambda wrapper: steps.append(f"parameter node {wrapper}")
    job, probe = panel.job, panel._device_probe
    panel.cleanup()
    assert job.cancelled and probe.cancelled and panel._device_probe is None
    assert steps == ["timer stopped", "parameter node None"]
