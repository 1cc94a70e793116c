"""What the training panel decides and shows, without Slicer: data summary, options and their reasons,
the command, epoch events → curves, the time left, and a training child followed through its Job
(a stand-in child prints the events: the tests substitute the process, not Slicer)."""

from __future__ import annotations

import json
import math
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from MRImputationLib.cli import build_parser
from MRImputationLib.core.errors import InputError
from MRImputationLib.core.events import EpochEvent, ProgressEvent
from MRImputationLib.core.progress import Progress
from MRImputationLib.pipelines.after_training import set_aside_outdated_evaluation
from MRImputationLib.slicer.process import parse_event
from MRImputationLib.slicer.training_decisions import DataSummary, TrainingOptions, summarize_data, training_command
from MRImputationLib.slicer.training_job import planned_epochs, start_training
from MRImputationLib.slicer.training_progress import TrainingCurves, TrainingMonitor


def _touch(folder: Path, *names: str) -> Path:
    """Empty files: discovery goes by names, so no image needs writing."""
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    return folder


@pytest.fixture
def raw(tmp_path) -> Path:
    return _touch(tmp_path / "raw", "IXI002-Guys-0828-T1.nii.gz", "IXI002-Guys-0828-T2.nii.gz",
                  "IXI002-Guys-0828-PD.nii.gz", "IXI012-HH-1211-T1.nii.gz", "IXI012-HH-1211-T2.nii.gz",
                  "IXI013-HH-1212-T1.nii.gz", "IXI013-HH-1212-T2.nii.gz", "IXI013-HH-1212-PD.nii.gz")


def test_a_raw_folder_is_summarized_by_subject_and_contrast_before_training(raw):
    summary = summarize_data(raw)
    assert not summary.preprocessed
    assert summary.subjects == {"IXI002-Guys-0828": ("T1", "T2", "PD"), "IXI012-HH-1211": ("T1", "T2"),
                                "IXI013-HH-1212": ("T1", "T2", "PD")}
    assert summary.counts() == {"T1": 3, "T2": 3, "PD": 2}
    assert summary.shared == ["T1", "T2"]
    assert summary.complete(["T1", "T2", "PD"]) == ["IXI002-Guys-0828", "IXI013-HH-1212"]
    assert summary.check() == (True, "") and summary.check(["T1", "T2", "PD"]) == (True, "")
    html = summary.to_html(["T1", "T2", "PD"])
    assert "IXI012-HH-1211" in html and "✓" in html and "–" in html and "2 have all of T1, T2, PD" in html


def test_a_preprocessed_folder_is_summarized_from_its_manifest(tmp_path):
    from MRImputationLib.preprocessing.folder import preprocess_folder
    from MRImputationLib.data.phantom import PhantomConfig, write_phantom
    from MRImputationLib.preprocessing.subject import PreprocessConfig

    write_phantom(tmp_path / "raw", 2, PhantomConfig(shape=(24, 24, 16), misalignment="none"), seed=1)
    preprocess_folder(tmp_path / "raw", tmp_path / "pre", PreprocessConfig(n4=False, register=False, qc=False))
    summary = summarize_data(tmp_path / "pre")
    assert summary.preprocessed and summary.shared == ["T1", "T2", "PD"] and len(summary.subjects) == 2
    assert "preprocessed" in summary.describe()


def test_data_that_cannot_train_says_why_in_words_a_user_can_act_on(raw, tmp_path):
    summary = summarize_data(raw)
    ok, reason = summary.check(["T1"])
    assert not ok and "at least two contrasts" in reason
    ok, reason = summary.check(["T1", "FLAIR"])
    assert not ok and "FLAIR" in reason
    lonely = DataSummary(raw, False, {"a": ("T1", "T2"), "b": ("T1",)})
    ok, reason = lonely.check(["T1", "T2"])
    assert not ok and "Only 1 subject(s)" in reason
    with pytest.raises(InputError, match="no subject images"):
        summarize_data(_touch(tmp_path / "notes", "readme.txt"))
    with pytest.raises(InputError, match="not a folder"):
        summarize_data(tmp_path / "absent")


def test_options_are_checked_with_a_reason_for_each_problem(raw, tmp_path):
    out = tmp_path / "run"
    summary = summarize_data(raw)
    good = TrainingOptions(str(raw), str(out), preset="tiny")
    assert good.check(summary) == (True, "")
    cases = {
        "Choose the data folder": TrainingOptions("", str(out)),
        "Choose an output folder": TrainingOptions(str(raw), ""),
        "is the data folder": TrainingOptions(str(raw), str(raw)),
        "Preset 'huge' is unknown": TrainingOptions(str(raw), str(out), preset="huge"),
        "holds no training run to resume": TrainingOptions(str(raw), str(out), resume=True),
        "needs the bundle": TrainingOptions(str(raw), str(out), install=True, export=False),
        "at least two contrasts": TrainingOptions(str(raw), str(out), contrasts=("PD",)),
    }
    for expected, options in cases.items():
        ok, reason = options.check(summary)
        assert not ok and expected in reason, (expected, reason)
    out.mkdir()
    (out / "config.json").write_text("{}")
    ok, reason = good.check(summary)
    assert not ok and "tick Resume" in reason
    assert TrainingOptions(str(raw), str(out), resume=True).check(summary) == (True, "")


def test_the_panel_command_is_mrimpute_train_with_the_steps_after_training(tmp_path):
    options = TrainingOptions("/data", "/runs/a", preset="seed-ixi", contrasts=("t1", "T2"), epochs=3, batch_size=2,
                              device="cpu", resume=True, evaluate=False, install=True, steps_per_epoch=5)
    command = training_command("/usr/bin/python3", options, models_folder=tmp_path / "models")
    assert command[:4] == ["/usr/bin/python3", "-m", "MRImputationLib", "train"]
    args = build_parser().parse_args(command[3:])
    assert (args.data, args.out, args.config, args.device) == ("/data", "/runs/a", "seed-ixi", "cpu")
    assert (args.contrasts, args.epochs, args.batch_size, args.steps_per_epoch) == (("T1", "T2"), 3, 2, 5)
    assert args.resume and not args.evaluate and args.export
    assert args.install and args.models_folder == tmp_path / "models" and args.progress == "json"
    plain = build_parser().parse_args(training_command("python", TrainingOptions("/d", "/r"))[3:])
    assert not plain.install and plain.epochs is None and not plain.resume


def test_epoch_events_become_curves_and_a_resumed_run_continues_them(tmp_path):
    event = parse_event('{"event": "epoch", "epoch": 1, "epochs": 2, "loss_g": 0.5}')
    assert event == EpochEvent(1, 2, {"loss_g": 0.5}) and event.record == {"epoch": 1, "epochs": 2, "loss_g": 0.5}
    for line in ('{"event": "log", "message": "x"}', "epoch 1/2, G 0.5", '{"event": "epoch"}', "{not json"):
        assert not isinstance(parse_event(line), EpochEvent)
    curves = TrainingCurves([{"epoch": 1, "loss_g": 0.5}, {"epoch": 2, "loss_g": 0.4, "val_psnr": 20.0},
                             {"epoch": 3, "loss_g": 0.3}])
    curves.add({"epoch": 2, "loss_g": 0.45})  # resumed from the epoch-1 checkpoint: epochs 2.. are redone
    assert curves.epochs == [1, 2] and curves.column("loss_g") == [0.5, 0.45]
    columns = curves.columns()
    assert columns["epoch"] == [1.0, 2.0] and all(math.isnan(v) for v in columns["val_psnr"])
    assert all(len(v) == 2 for v in columns.values())
    (tmp_path / "history.jsonl").write_text('{"epoch": 1, "loss_g": 0.5}\n{"epoch": 2, "loss_g": 0.4}\n{"epo')
    assert TrainingCurves.from_history(tmp_path).epochs == [1, 2]  # a line cut short by a crash is skipped
    assert len(TrainingCurves.from_history(tmp_path / "none")) == 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_time_left_follows_the_pace_of_the_last_epochs():
    clock = Clock()
    monitor = TrainingMonitor(epochs=10, clock=clock)
    assert monitor.time_left() is None and monitor.status().startswith("starting")
    clock.now = 110
    monitor.on_progress(ProgressEvent("train", 0.01, "epoch 1/10", eta_s=990.0))
    assert monitor.time_left() == 990.0  # before the first epoch: the child's own estimate
    for epoch in (1, 2):
        clock.now += 30
        monitor.on_epoch(EpochEvent(epoch, 10, {"loss_g": 0.5, "loss_d": 0.6, "val_psnr": 21.5, "val_ssim": 0.8}))
    assert monitor.epoch_seconds() == 30 and monitor.time_left() == 8 * 30
    status = monitor.status()
    assert "epoch 2/10" in status and "G 0.500" in status and "val PSNR 21.50 dB" in status
    assert "about 4 min 00 s of training left" in status
    monitor.on_progress(ProgressEvent("evaluate", 0.5, "", eta_s=12.0))
    assert monitor.time_left() == 12.0 and "evaluate 50%" in monitor.status()


def test_the_planned_epochs_come_from_the_options_the_run_or_the_preset(tmp_path):
    assert planned_epochs(TrainingOptions("d", str(tmp_path), preset="tiny")) == 6
    assert planned_epochs(TrainingOptions("d", str(tmp_path), preset="tiny", epochs=2)) == 2
    (tmp_path / "config.json").write_text(json.dumps({"epochs": 40}))
    assert planned_epochs(TrainingOptions("d", str(tmp_path), resume=True)) == 40


def test_an_evaluation_of_the_exported_weights_is_kept_an_older_one_set_aside(tmp_path):
    run = tmp_path / "run"
    _touch(run, "evaluation/results.json", "checkpoints/best.pt")
    os.utime(run / "checkpoints" / "best.pt", (1000, 1000))
    set_aside_outdated_evaluation(run, Progress("none"))
    assert (run / "evaluation" / "results.json").exists()
    os.utime(run / "evaluation" / "results.json", (10, 10))
    set_aside_outdated_evaluation(run, Progress("none"))
    assert not (run / "evaluation").exists() and (run / "evaluation-outdated" / "results.json").exists()


FAKE_TRAINER = textwrap.dedent("""
    import json, sys, time
    def emit(**event):
        print(json.dumps(event), flush=True)
    emit(event="progress", stage="train", fraction=0.0, message="epoch 1/2", eta_s=None)
    emit(event="epoch", epoch=1, epochs=2, loss_g=0.5, loss_d=0.7, val_psnr=20.0, val_ssim=0.7)
    emit(event="log", message="epoch 1/2, G 0.5")
    if "fail" in sys.argv:
        emit(event="error", message="data: no subject images found", exit_code=2)
        sys.exit(2)
    if "hang" in sys.argv:
        time.sleep(60)
    emit(event="epoch", epoch=2, epochs=2, loss_g=0.4, loss_d=0.6, val_psnr=21.0, val_ssim=0.75)
    emit(event="done", bundle="/runs/a/bundle", installed={"id": "tiny-a-0.1.0", "name": "tiny-a", "version": "0.1.0"})
""")


def _job(tmp_path, *mode: str, **callbacks):
    (tmp_path / "data").mkdir(exist_ok=True)
    options = TrainingOptions(str(tmp_path / "data"), str(tmp_path / "run"), preset="tiny")
    return start_training(options, command=[sys.executable, "-c", FAKE_TRAINER, *mode], **callbacks)


def test_a_training_job_turns_epoch_events_into_curves_and_reports_the_bundle(tmp_path):
    epochs, logs, finished = [], [], []
    job = _job(tmp_path, on_epoch=epochs.append, on_log=lambda e: logs.append(e.message), on_finished=finished.append)
    job.wait(timeout=30)
    assert job.ok and finished == [job]
    assert [e.epoch for e in epochs] == [1, 2] and job.monitor.curves.column("val_psnr") == [20.0, 21.0]
    assert logs == ["epoch 1/2, G 0.5"], "epoch events are curves, not log lines"
    assert job.outputs.bundle == Path("/runs/a/bundle") and job.outputs.installed["id"] == "tiny-a-0.1.0"
    assert "epoch 2/2" in job.monitor.status()


def test_a_failed_training_job_carries_the_child_s_message(tmp_path):
    job = _job(tmp_path, "fail")
    with pytest.raises(InputError, match="no subject images"):
        job.wait(timeout=30)
    assert not job.ok and len(job.monitor.curves) == 1


def test_stopping_a_training_job_ends_its_process(tmp_path):
    job = _job(tmp_path, "hang")
    deadline = time.monotonic() + 20
    while not len(job.monitor.curves) and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.05)
    job.cancel()
    job.wait(timeout=30)
    assert job.cancelled and not job.ok and not job.error
    assert job.child.process.poll() is not None


def test_a_job_does_not_start_with_options_that_cannot_work(tmp_path):
    with pytest.raises(InputError, match="Choose an output folder"):
        start_training(TrainingOptions(str(tmp_path), ""), command=[sys.executable, "-c", "pass"])
