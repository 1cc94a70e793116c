"""The child-process runner the Slicer module uses: real children, real JSON events, real cancellation."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from MRImputationLib.core.errors import EXIT_BAD_INPUT
from MRImputationLib.core.events import DoneEvent, ErrorEvent, LogEvent, ProgressEvent
from MRImputationLib.slicer.imputation_decisions import ImputationOptions, impute_command
from MRImputationLib.slicer.job import child_environment, lib_folder
from MRImputationLib.slicer.process import ChildProcess, cancelled_exit_codes, parse_event

# What PythonSlicer does: a launcher process that starts the real Python as its child.
LAUNCHER = [sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"]


@pytest.fixture(scope="module")
def patient(tmp_path_factory) -> Path:
    from MRImputationLib.data.phantom import PhantomConfig, make_subject, write_subject

    folder = tmp_path_factory.mktemp("runner") / "sub-901"
    subject = make_subject(PhantomConfig(shape=(48, 48, 32), misalignment="none", bias_strength=0.05), seed=901,
                           name="sub-901")
    return write_subject(subject, folder)


def _child(command, **callbacks) -> ChildProcess:
    return ChildProcess(command, env=child_environment(), cwd=str(lib_folder()), **callbacks)


def _impute(bundle, patient, out, *names, options=None) -> list[str]:
    inputs = {n: patient / f"sub-901_{n}.nii.gz" for n in names}
    return impute_command(sys.executable, bundle, inputs, out, options or ImputationOptions(n4=False, register=False))


def _group_members(group: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":  # state, ppid, pgrp; zombies have ended
            members.append(int(stat.parent.name))
    return members


@pytest.mark.parametrize("line, expected", [
    ('{"event": "progress", "stage": "preprocess", "fraction": 0.25, "message": "N4", "elapsed_s": 1.5, "eta_s": null}',
     ProgressEvent("preprocess", 0.25, "N4", 1.5, None)),
    ('{"event": "log", "message": "no CUDA GPU"}', LogEvent("no CUDA GPU")),
    ('{"event": "done", "out": "x"}', DoneEvent({"out": "x"})),
    ('{"event": "error", "message": "T9: unknown", "exit_code": 2}', ErrorEvent("T9: unknown", 2)),
    ("Traceback (most recent call last):", LogEvent("Traceback (most recent call last):")),
    ('{"not": "an event"}', LogEvent('{"not": "an event"}')),
    ('{"event": "progress", "broken', LogEvent('{"event": "progress", "broken')),
])
def test_each_output_line_becomes_a_typed_event(line, expected):
    assert parse_event(line + "\n") == expected


def test_json_on_stderr_is_a_log_line_not_an_event():
    assert parse_event('{"event": "done"}', stream="stderr") == LogEvent('{"event": "done"}', "stderr")


def test_imputation_child_reports_progress_then_done_with_the_written_files(tiny_bundle, patient, tmp_path):
    progress, logs, done = [], [], []
    child = _child(_impute(tiny_bundle, patient, tmp_path / "out", "T1", "T2"), on_progress=progress.append,
                   on_log=logs.append, on_done=done.append)
    result = child.start().wait(timeout=180)
    assert result.ok, result.message()
    assert [e.stage for e in progress if e.stage == "synthesize"] and all(0 <= e.fraction <= 1 for e in progress)
    assert progress[-1].describe().startswith(progress[-1].stage)
    assert done == [result.done] and result.done.info["synthesized"] == ["PD"]
    assert (tmp_path / "out" / "PD_synthetic.nii.gz").exists()
    assert any("synthesizing PD" in e.message for e in logs)


def test_bad_input_ends_with_exit_2_and_an_error_naming_the_input(tiny_bundle, patient, tmp_path):
    errors = []
    command = _impute(tiny_bundle, patient, tmp_path / "out", "T1")
    command[command.index("--input") + 1] = f"T1={tmp_path / 'absent_t1.nii.gz'}"
    result = _child(command, on_error=errors.append).start().wait(timeout=120)
    assert result.exit_code == EXIT_BAD_INPUT and not result.ok
    assert errors == [result.error] and "absent_t1.nii.gz" in result.message()
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process groups are listed through /proc (Linux)")
def test_cancel_mid_run_ends_the_launcher_and_its_worker_and_leaves_no_output(tiny_bundle, patient, tmp_path):
    command = _impute(tiny_bundle, patient, tmp_path / "out", "T1",
                      options=ImputationOptions(n4=False, register=False, uncertainty=1))
    command[command.index("--uncertainty") + 1] = "500"  # far more passes than the panel allows: it must be stopped
    child = _child(LAUNCHER + command).start()
    deadline = time.monotonic() + 120
    while not (child.last_progress and child.last_progress.stage == "uncertainty"):
        result = child.poll()
        assert result is None, result.message()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(_group_members(child.pid)) >= 2  # the launcher and the Python doing the work
    start = time.monotonic()
    child.cancel()
    result = child.wait(timeout=30)
    assert time.monotonic() - start < 10
    assert result.cancelled and not result.ok and result.exit_code in cancelled_exit_codes()
    assert _group_members(child.pid) == []
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM is ignorable only on POSIX")
def test_a_child_that_ignores_the_stop_request_is_killed_after_the_grace_period():
    stubborn = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('{\"event\": \"progress\", \"stage\": \"work\", \"fraction\": 0.1}', flush=True); time.sleep(60)")
    child = ChildProcess([sys.executable, "-c", stubborn]).start()
    while child.last_progress is None:
        assert child.poll() is None
        time.sleep(0.02)
    start = time.monotonic()
    child.cancel(grace=0.5)
    result = child.wait(timeout=20)
    assert result.cancelled and result.exit_code == -9 and time.monotonic() - start < 5


def test_a_crash_without_an_error_event_is_reported_with_its_last_output():
    errors = []
    crash = "import sys; print('half a line of work'); print('RuntimeError: out of memory', file=sys.stderr); sys.exit(3)"
    result = ChildProcess([sys.executable, "-c", crash], on_error=errors.append).start().wait(timeout=30)
    assert result.exit_code == 3 and errors == [result.error]
    assert "exit code 3" in result.message() and "out of memory" in result.message()


def test_poll_returns_at_once_while_the_child_works():
    child = ChildProcess([sys.executable, "-c", "import time; time.sleep(1.5)"]).start()
    start = time.monotonic()
    assert child.poll() is None and child.running
    assert time.monotonic() - start < 0.1
    assert child.wait(timeout=30).exit_code == 0 and not child.running


def test_device_probe_reports_what_torch_sees_from_a_child_process():
    import time

    import torch

    from MRImputationLib.slicer.devices import start_device_probe

    found: list[dict] = []
    probe = start_device_probe(found.append)
    deadline = time.monotonic() + 120
    while not probe.poll() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert found and found[0]["cuda"] == torch.cuda.is_available()
    assert found[0]["torch"] == torch.__version__
