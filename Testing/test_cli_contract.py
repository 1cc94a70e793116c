"""The command line as a process contract: JSON progress events, exit codes, no partial output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO / "MRImputation")}


def _mrimpute(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "MRImputationLib", *args], env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_json_progress_prints_one_event_per_line_and_a_final_done(tmp_path):
    done = _mrimpute("phantom", str(tmp_path / "ph"), "--subjects", "2", "--shape", "24,24,16", "--progress", "json")
    assert done.returncode == 0, done.stderr
    events = _events(done.stdout)
    assert len(events) == len(done.stdout.strip().splitlines())  # nothing but JSON on stdout
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and all(0 <= e["fraction"] <= 1 and e["stage"] == "phantom" for e in progress)
    assert progress[-1]["fraction"] == 1.0
    assert events[-1]["event"] == "done" and len(events[-1]["subjects"]) == 2


def test_bad_input_exits_2_with_an_error_event_naming_the_input(tmp_path):
    done = _mrimpute("preprocess", str(tmp_path / "absent"), str(tmp_path / "out"), "--progress", "json")
    assert done.returncode == 2
    error = _events(done.stdout)[-1]
    assert error["event"] == "error" and error["exit_code"] == 2 and "absent" in error["message"]


def test_bad_input_on_a_terminal_style_run_prints_a_readable_message(tmp_path):
    done = _mrimpute("preprocess", str(tmp_path), str(tmp_path / "out"))
    assert done.returncode == 2
    assert "error:" in done.stderr and "no subject images found" in done.stderr and "Traceback" not in done.stderr


def test_one_broken_subject_is_reported_and_the_others_are_kept(tmp_path):
    from MRImputationLib.data.phantom import PhantomConfig, write_phantom

    write_phantom(tmp_path / "raw", 2, PhantomConfig(shape=(32, 32, 20)), seed=1)
    (tmp_path / "raw" / "sub-001" / "sub-001_T2.nii.gz").write_bytes(b"damaged")
    done = _mrimpute("preprocess", str(tmp_path / "raw"), str(tmp_path / "out"), "--no-n4", "--no-register",
                     "--no-qc", "--jobs", "2", "--progress", "json")
    assert done.returncode == 2
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    status = {s["subject"]: s["status"] for s in manifest["subjects"]}
    assert status == {"sub-000": "ok", "sub-001": "failed"}
    failed = next(s for s in manifest["subjects"] if s["subject"] == "sub-001")
    assert "sub-001_T2.nii.gz" in failed["error"]
    assert (tmp_path / "out" / "sub-000" / "sub-000_T1.nii.gz").exists()
    assert not (tmp_path / "out" / "sub-001").exists()


def test_sigterm_stops_within_seconds_with_exit_130_and_no_partial_output(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "MRImputationLib", "phantom", str(tmp_path / "ph"), "--subjects", "200",
         "--shape", "96,96,64", "--progress", "json"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:  # wait until work is under way
        if '"progress"' in line:
            break
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    start = time.monotonic()
    code = process.wait(timeout=30)
    waited = time.monotonic() - start
    rest = process.stdout.read()
    assert code == 130
    assert waited < 5
    assert '"exit_code": 130' in rest
    leftovers = [p for p in (tmp_path / "ph").rglob("*") if p.name.startswith(".")]
    assert leftovers == []  # no temporary files left behind
    for subject in (tmp_path / "ph").iterdir():  # every subject folder present is complete
        assert (subject / "truth" / "transforms.json").exists(), subject


def _models_env(tmp_path) -> dict:
    """The command line with its models folder (and home) in `tmp_path`: nothing of the user's is read or moved."""
    return {**ENV, "MRIMPUTATION_MODELS": str(tmp_path / "models"), "HOME": str(tmp_path / "home")}


def test_models_lists_installed_models_as_a_table_or_json_and_a_name_works_as_model(tmp_path):
    from MRImputationLib.models.store import ModelStore
    from MRImputationLib.slicer.self_test_data import SELF_TEST_MODEL, untrained_bundle

    env = _models_env(tmp_path)
    run = lambda *args: subprocess.run([sys.executable, "-m", "MRImputationLib", *args], env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    empty = run("models")  # nothing installed: only the models shipped in Resources/Models, if any
    shipped = REPO / "MRImputation" / "Resources" / "Models"
    builtin = sorted(p.name for p in shipped.iterdir() if p.is_dir()) if shipped.is_dir() else []
    assert empty.returncode == 0 and " installed " not in empty.stdout
    assert all(name in empty.stdout for name in builtin) if builtin else \
        "No model is built in or installed." in empty.stdout
    ModelStore(tmp_path / "models").import_bundle(untrained_bundle(tmp_path / "bundle"))
    table = run("models")
    assert table.returncode == 0 and SELF_TEST_MODEL in table.stdout and "T1, T2, PD" in table.stdout
    listing = json.loads(run("models", "--json").stdout)
    [row] = [r for r in listing["models"] if r["kind"] == "installed"]
    assert row["name"] == SELF_TEST_MODEL and row["contrasts"] == ["T1", "T2", "PD"] and not row["builtin"]
    assert listing["folder"] == str(tmp_path / "models") and Path(row["path"]).is_dir()
    events = _events(run("models", "--progress", "json").stdout)
    assert events[-1]["event"] == "done" and events[-1]["models"] == listing["models"]
    missing = run("impute", "--model", "no-such-model", "--input", f"T1={tmp_path / 't1.nii.gz'}",
                  "--out", str(tmp_path / "out"), "--progress", "json")
    error = _events(missing.stdout)[-1]
    assert missing.returncode == 2 and error["event"] == "error"
    assert "--model 'no-such-model'" in error["message"] and f"{SELF_TEST_MODEL}-0.0.1 (installed" in error["message"]
    by_name = run("impute", "--model", SELF_TEST_MODEL, "--input", f"T1={tmp_path / 'absent.nii.gz'}",
                  "--out", str(tmp_path / "out"), "--progress", "json")
    assert by_name.returncode == 2 and "absent.nii.gz" in _events(by_name.stdout)[-1]["message"]
