"""The headless training script (MRImputationTraining/train.py, i.e. `mrimpute train` with the steps
after training) as a real process on a small phantom: train → evaluate → export → install, JSON
progress lines, exit codes, and --resume.

Inside Slicer the same file runs under `Slicer --no-main-window --python-script`; here it runs with
this Python, as a log collector would see it (stdout not a terminal, so JSON lines by default).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, preprocessed_phantom

SCRIPT = REPO / "MRImputationTraining" / "train.py"
FAST = ["--config", "tiny", "--epochs", "1", "--steps-per-epoch", "3"]


def _train(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """`python train.py -- ARGS` as Slicer passes them (a `--` first), from a neutral folder."""
    return subprocess.run([sys.executable, str(SCRIPT), "--", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO.parent)


def _events(stdout: str) -> list[dict]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # a log collector reads every line as JSON
    assert all("event" in e for e in events)
    return events


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory) -> Path:
    """Three aligned 48×48×32 phantom subjects, preprocessed without N4 and registration (seconds)."""
    return preprocessed_phantom(tmp_path_factory.mktemp("headless"), 3, (48, 48, 32), seed=5)


@pytest.fixture(scope="module")
def trained(preprocessed, tmp_path_factory):
    """One run of the script: train one epoch, evaluate, export and install into a models folder."""
    root = tmp_path_factory.mktemp("trained")
    done = _train(str(preprocessed), "--out", str(root / "run"), *FAST, "--install", "--models-folder",
                  str(root / "models"))
    return done, root / "run", root / "models"


def test_one_run_trains_evaluates_exports_and_installs_with_exit_0(trained):
    done, run, models = trained
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    events = _events(done.stdout)
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1] and epochs[0]["epochs"] == 1
    assert {"loss_g", "loss_d", "val_psnr", "val_ssim"} <= set(epochs[0])
    stages = {e["stage"] for e in events if e["event"] == "progress"}
    assert {"train", "evaluate", "export"} <= stages
    final = events[-1]
    assert final["event"] == "done" and final["training"]["finished"]
    assert (run / "evaluation" / "results.md").is_file() and final["evaluation"]["subjects"]
    bundle = json.loads((run / "bundle" / "bundle.json").read_text())
    assert bundle["metrics"]["test"], "the bundle carries the test metrics of the evaluation"
    assert bundle["name"] == f"tiny-T1-T2-PD-{run.name}" == final["installed"]["name"]

    from MRImputationLib.models.store import ModelStore

    assert [c.id for c in ModelStore(models).installed()] == [final["installed"]["id"]]


def test_resume_continues_the_run_and_sets_aside_an_evaluation_of_older_weights(trained, preprocessed, tmp_path):
    done, run, models = trained
    assert done.returncode == 0
    copy = shutil.copytree(run, tmp_path / "run")
    os.utime(copy / "evaluation" / "results.json", (0, 0))  # older than any checkpoint, whichever export picks
    resumed = _train(str(preprocessed), "--out", str(copy), "--resume", "--epochs", "2", "--steps-per-epoch", "3",
                     "--no-evaluate")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    events = _events(resumed.stdout)
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [2]
    assert any("resuming at epoch 2" in e.get("message", "") for e in events)
    history = [json.loads(line)["epoch"] for line in (copy / "history.jsonl").read_text().splitlines()]
    assert history == [1, 2]
    assert (copy / "evaluation-outdated" / "results.md").is_file() and not (copy / "evaluation").exists()
    bundle = json.loads((copy / "bundle" / "bundle.json").read_text())
    assert bundle["training"]["epochs_done"] == 2 and "test" not in bundle["metrics"]


def test_bad_input_exits_2_with_a_message_naming_it(tmp_path, preprocessed):
    missing = _train(str(tmp_path / "absent"), "--out", str(tmp_path / "run"))
    assert missing.returncode == 2
    error = _events(missing.stdout)[-1]
    assert error["event"] == "error" and error["exit_code"] == 2 and "absent" in error["message"]

    (tmp_path / "empty").mkdir()
    nothing = _train(str(tmp_path / "empty"), "--out", str(tmp_path / "run"), "--progress", "none")
    assert nothing.returncode == 2 and "error:" in nothing.stderr and "no subject images" in nothing.stderr

    no_run = _train(str(preprocessed), "--out", str(tmp_path / "fresh"), "--resume")
    assert no_run.returncode == 2 and "start it without --resume" in _events(no_run.stdout)[-1]["message"]

    unknown = _train(str(preprocessed), "--out", str(tmp_path / "run"), "--no-such-option")
    assert unknown.returncode == 2 and "--no-such-option" in unknown.stderr
