"""Attacks on what the commands write, and what each one now meets (issue "Reliability", defects 1, 2,
4, 5, 12, 13, 16, 18). One test per attack; kills and signals hit real child processes.

Export (defect 1): BUNDLE absent or a bundle, replaced whole; nothing else is ever touched.
  - export onto a folder of unrelated files        -> exit 2 naming BUNDLE, every file kept
  - export x.zip beside an existing folder x/      -> x.zip written, x/ untouched, no loose folder
  - export a run onto itself                       -> exit 2 naming the run, the run intact
  - export onto an existing file                   -> exit 2, the file kept where it was
  - export onto an earlier bundle                  -> replaced whole (no file of the old one left)
Preprocess (defect 2): OUT apart from IN, and only a folder preprocess wrote is written into.
  - preprocess IN IN                               -> exit 2, raw volumes and truth/ unchanged
  - preprocess IN IN/out                           -> exit 2, nothing written
  - preprocess IN LINK (LINK -> IN)                -> exit 2, links resolved
  - preprocess into a folder of other files        -> exit 2, its folders (even sub-000/) kept
  - preprocess again after a crash before the manifest -> runs (the folder is marked as its own)
Impute (defect 4): a folder with an earlier result needs --replace; a lock against a second writer.
  - impute into a folder holding an earlier result -> exit 2 naming --replace, the result unchanged
  - impute --replace over an earlier result        -> replaced whole (no file of the old run left)
  - impute --replace into a folder of other files  -> exit 2, the files kept
  - two imputes into one folder at once            -> the second exits 2 naming the first's pid
  - impute after one was killed (kill -9)          -> its lock taken over with a log line, its temporary removed
  - a lock whose pid now belongs to a later process -> taken over; a live owner's lock is respected
Train (defect 5):
  - two trainings into one --out at once           -> the second exits 2 naming the folder and the first's pid
Outputs checked first (defect 12), for impute, preprocess, train, evaluate, export, compare, phantom, demo:
  - --out is a file                                -> exit 2 about --out before any input is read, file kept
  - --out cannot be written                        -> exit 2 about --out before any input is read
Whole folders (defect 13):
  - impute into a folder holding a brain_mask.nii.gz folder -> exit 2 before any work, no synthetic volume
  - compare on a disk that fills up                -> exit 1, no partial folder, no temporary
  - SIGTERM during a zip export                    -> exit 130, no zip, no folder, no temporary
Permissions (defect 16):
  - bundle, preprocessed and imputed folders under umask 027 -> mode 0750 (not mkdtemp's 0700)
Leftovers (defect 18):
  - kill -9 during a zip export, then export again -> the killed process's temporaries removed
  - a temporary of a process still running         -> never removed
  - impute --reference of a missing file           -> exit 2 before any synthesis
  - impute --reference of a contrast that is not synthesized -> exit 2 before any synthesis
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
import zipfile
from pathlib import Path

import pytest

from MRImputationLib.core.atomic import write_text
from MRImputationLib.core.errors import InputError
from MRImputationLib.core.locking import FolderLock
from MRImputationLib.pipelines.export import export_run
from MRImputationLib.pipelines.impute import ImputeOptions, impute
from MRImputationLib.preprocessing.folder import preprocess_folder
from MRImputationLib.preprocessing.subject import PreprocessConfig
from fault_tools import (child, cli, exporting_child, hidden, json_events, run_child, small_disk, snapshot,
                         temporary_holder, unwritable, wait_for, wait_for_line)

# The attacks, as the docstring lists them (each "  - attack -> outcome" line is one test below).
ATTACKS = [line.strip()[2:] for line in __doc__.splitlines() if line.startswith("  - ")]


@pytest.fixture(scope="module")
def run_folder(tiny_bundle) -> Path:
    return tiny_bundle.parent / "run"


@pytest.fixture(scope="module")
def patient(tmp_path_factory) -> Path:
    from MRImputationLib.data.phantom import PhantomConfig, make_subject, write_subject

    subject = make_subject(PhantomConfig(shape=(48, 48, 32), misalignment="none", bias_strength=0.05), seed=901,
                           name="sub-901")
    return write_subject(subject, tmp_path_factory.mktemp("patient") / "sub-901")


@pytest.fixture()
def raw(tmp_path) -> Path:
    from MRImputationLib.data.phantom import PhantomConfig, write_phantom

    write_phantom(tmp_path / "raw", 1, PhantomConfig(shape=(24, 24, 16), misalignment="none"), seed=3)
    return tmp_path / "raw"


def _impute_args(tiny_bundle, patient, out, *extra) -> list[str]:
    return ["impute", "--model", str(tiny_bundle), "--input", f"T1={patient / 'sub-901_T1.nii.gz'}",
            "--input", f"T2={patient / 'sub-901_T2.nii.gz'}", "--out", str(out), "--no-n4", *extra]


# -- defect 1: export ------------------------------------------------------------------------------
def test_export_onto_a_folder_of_unrelated_files_is_refused_and_keeps_them(capsys, run_folder, tmp_path):
    dest = tmp_path / "photos"
    dest.mkdir()
    (dest / "holiday.jpg").write_bytes(b"precious")
    (dest / "album").mkdir()
    (dest / "album" / "a.jpg").write_bytes(b"also precious")
    before = snapshot(dest)
    code, error, _ = cli(capsys, "export", str(run_folder), str(dest), "--no-baseline")
    assert code == 2 and str(dest) in error["message"] and "not a model bundle" in error["message"]
    assert snapshot(dest) == before


def test_export_to_a_zip_leaves_an_existing_folder_of_the_same_name_alone(capsys, run_folder, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "thesis.tex").write_text("mine")
    code, done, _ = cli(capsys, "export", str(run_folder), str(tmp_path / "x.zip"), "--no-baseline")
    assert code == 0, done
    assert snapshot(tmp_path / "x") == {"thesis.tex": b"mine"}
    with zipfile.ZipFile(tmp_path / "x.zip") as archive:
        assert "bundle.json" in archive.namelist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x", "x.zip"]  # no loose bundle folder, no temporary


def test_export_of_a_run_onto_itself_is_refused_and_the_run_kept(capsys, run_folder, tmp_path):
    copy = tmp_path / "runcopy"
    shutil.copytree(run_folder, copy)
    before = snapshot(copy)
    code, error, _ = cli(capsys, "export", str(copy), str(copy), "--no-baseline")
    assert code == 2 and "delete the run" in error["message"]
    assert snapshot(copy) == before


def test_export_onto_an_existing_file_is_refused_and_the_file_stays_where_it_was(capsys, run_folder, tmp_path):
    (tmp_path / "notes").write_text("keep me")
    code, error, _ = cli(capsys, "export", str(run_folder), str(tmp_path / "notes"), "--no-baseline")
    assert code == 2 and "is a file" in error["message"]
    assert (tmp_path / "notes").read_text() == "keep me" and hidden(tmp_path) == []


def test_export_onto_an_earlier_bundle_replaces_it_whole(capsys, run_folder, tmp_path):
    bundle = tmp_path / "bundle"
    assert cli(capsys, "export", str(run_folder), str(bundle), "--version", "1.0")[0] == 0
    assert (bundle / "baseline.safetensors").exists()
    assert cli(capsys, "export", str(run_folder), str(bundle), "--version", "2.0", "--no-baseline")[0] == 0
    assert json.loads((bundle / "bundle.json").read_text())["version"] == "2.0"
    assert not (bundle / "baseline.safetensors").exists()  # nothing of the old bundle survives
    assert hidden(tmp_path) == []


# -- defect 2: preprocess --------------------------------------------------------------------------
def test_preprocess_into_its_own_input_is_refused_and_the_input_kept(capsys, raw):
    before = snapshot(raw)
    code, error, _ = cli(capsys, "preprocess", str(raw), str(raw), "--no-n4", "--no-register", "--no-qc")
    assert code == 2 and "overwrite the input" in error["message"]
    assert snapshot(raw) == before and (raw / "sub-000" / "truth").is_dir()


def test_preprocess_into_a_folder_inside_its_input_is_refused(capsys, raw):
    before = snapshot(raw)
    code, error, _ = cli(capsys, "preprocess", str(raw), str(raw / "out"), "--no-n4", "--no-register", "--no-qc")
    assert code == 2 and "lies inside" in error["message"]
    assert snapshot(raw) == before and not (raw / "out").exists()


def test_preprocess_into_a_link_to_its_input_is_refused(capsys, raw, tmp_path):
    (tmp_path / "link").symlink_to(raw, target_is_directory=True)
    before = snapshot(raw)
    code, error, _ = cli(capsys, "preprocess", str(raw), str(tmp_path / "link"), "--no-n4", "--no-register")
    assert code == 2 and str(raw.resolve()) in error["message"]
    assert snapshot(raw) == before


def test_preprocess_never_writes_into_a_folder_it_did_not_write(capsys, raw, tmp_path):
    mine = tmp_path / "mine"
    (mine / "sub-000").mkdir(parents=True)  # a subject's name: preprocess would replace this folder whole
    (mine / "sub-000" / "segmentation.nii.gz").write_bytes(b"hand-drawn")
    (mine / "notes.txt").write_text("keep")
    before = snapshot(mine)
    code, error, _ = cli(capsys, "preprocess", str(raw), str(mine), "--no-n4", "--no-register", "--no-qc")
    assert code == 2 and "did not write" in error["message"]
    assert snapshot(mine) == before


def test_preprocess_runs_again_into_its_own_folder_after_a_crash_before_the_manifest(capsys, raw, tmp_path):
    out = tmp_path / "pre"
    assert cli(capsys, "preprocess", str(raw), str(out), "--no-n4", "--no-register", "--no-qc")[0] == 0
    (out / "manifest.json").unlink()  # as if killed after the subjects, before the manifest
    code, done, _ = cli(capsys, "preprocess", str(raw), str(out), "--no-n4", "--no-register", "--no-qc")
    assert code == 0, done
    assert (out / "manifest.json").exists() and (out / "sub-000").is_dir()


# -- defect 4: impute ------------------------------------------------------------------------------
def test_impute_into_a_folder_holding_an_earlier_result_is_refused_without_replace(capsys, tiny_bundle, patient,
                                                                                    tmp_path):
    out = tmp_path / "out"
    assert cli(capsys, *_impute_args(tiny_bundle, patient, out))[0] == 0
    before = snapshot(out)
    code, error, events = cli(capsys, *_impute_args(tiny_bundle, patient, out, "--uncertainty", "2"))
    assert code == 2 and "--replace" in error["message"] and str(out) in error["message"]
    assert not any(e.get("stage") == "synthesize" for e in events)  # refused before any work
    assert snapshot(out) == before


def test_impute_with_replace_replaces_the_earlier_result_whole(capsys, tiny_bundle, patient, tmp_path):
    out = tmp_path / "out"
    assert cli(capsys, *_impute_args(tiny_bundle, patient, out, "--uncertainty", "2"))[0] == 0
    assert (out / "PD_uncertainty.nii.gz").exists()
    code, _, _ = cli(capsys, *_impute_args(tiny_bundle, patient, out, "--replace"))
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["PD_synthetic.nii.gz", "brain_mask.nii.gz", "report.json"]
    assert json.loads((out / "report.json").read_text())["options"]["uncertainty"] == 0
    assert hidden(tmp_path) == []  # no temporary, no lock


def test_impute_with_replace_into_a_folder_of_other_files_is_refused(capsys, tiny_bundle, patient, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "PD_synthetic.nii.gz").write_bytes(b"an earlier result")
    (out / "notes.txt").write_text("keep")
    before = snapshot(out)
    code, error, _ = cli(capsys, *_impute_args(tiny_bundle, patient, out, "--replace"))
    assert code == 2 and "notes.txt" in error["message"]
    assert snapshot(out) == before


def test_two_imputes_into_one_folder_at_once_the_second_is_refused_naming_the_first(tiny_bundle, patient,
                                                                                      tmp_path):
    out = tmp_path / "out"
    first = child(*_impute_args(tiny_bundle, patient, out, "--uncertainty", "1000"))
    try:
        wait_for(tmp_path / ".out.lock", first)
        code, error = run_child(*_impute_args(tiny_bundle, patient, out))
        assert code == 2, error
        assert str(out) in error["message"] and f"process {first.pid}" in error["message"]
        assert first.poll() is None  # the first one runs on, untouched
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 130
    assert not out.exists() and hidden(tmp_path) == []


def test_impute_after_one_was_killed_takes_its_lock_over_and_removes_its_temporary(capsys, tiny_bundle, patient,
                                                                                     tmp_path):
    out = tmp_path / "out"
    killed = child(*_impute_args(tiny_bundle, patient, out, "--uncertainty", "1000"))
    wait_for_line(killed, '"uncertainty"').kill()  # the uncertainty passes run inside the staged folder
    killed.wait(timeout=60)
    left = hidden(tmp_path)
    assert ".out.lock" in left and any(n.startswith(f".out.tmp-{killed.pid}-") for n in left)
    code, done, events = cli(capsys, *_impute_args(tiny_bundle, patient, out))
    assert code == 0, done
    assert any("took over the lock" in e.get("message", "") and str(killed.pid) in e["message"] for e in events)
    assert hidden(tmp_path) == [] and (out / "PD_synthetic.nii.gz").exists()


def test_a_lock_whose_pid_was_reused_is_taken_over_and_a_live_owners_is_respected(tmp_path):
    lock = tmp_path / ".out.lock"
    parent = os.getppid()  # alive, and started before now
    lock.write_text(json.dumps({"pid": parent, "host": socket.gethostname(), "started": time.time()}))
    with pytest.raises(InputError, match=f"process {parent}"):
        FolderLock(lock, "--out out").acquire()
    lock.write_text(json.dumps({"pid": parent, "host": socket.gethostname(), "started": 1.0}))  # before it started
    said = []
    with FolderLock(lock, "--out out", said.append):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert said and "took over" in said[0] and not lock.exists()


# -- defect 5: train -------------------------------------------------------------------------------
def test_two_trainings_into_one_run_folder_the_second_exits_2_naming_the_first(tiny_bundle, tmp_path):
    data, run = tiny_bundle.parent / "pre", tmp_path / "run"
    first = child("train", str(data), "--out", str(run), "--config", "tiny", "--epochs", "1000")
    try:
        wait_for(tmp_path / ".run.lock", first)
        code, error = run_child("train", str(data), "--out", str(run), "--config", "tiny", "--epochs", "1")
        assert code == 2, error
        assert str(run) in error["message"] and f"process {first.pid}" in error["message"]
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=180) == 130
    assert not (tmp_path / ".run.lock").exists()


# -- defect 12: outputs checked first --------------------------------------------------------------
COMMANDS = {  # the command with --out OUT and inputs that do not exist: an error about them means it read first
    "impute": lambda out, absent: ["impute", "--model", str(absent), "--input", f"T1={absent}", "--out", str(out)],
    "preprocess": lambda out, absent: ["preprocess", str(absent), str(out)],
    "train": lambda out, absent: ["train", str(absent), "--out", str(out)],
    "evaluate": lambda out, absent: ["evaluate", str(absent), str(absent), "--out", str(out)],
    "export": lambda out, absent: ["export", str(absent), str(out)],
    "compare": lambda out, absent: ["compare", str(absent), str(absent), "--out", str(out)],
    "phantom": lambda out, absent: ["phantom", str(out)],
    "demo": lambda out, absent: ["demo", "--out", str(out)],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_output_that_is_a_file_is_refused_before_any_input_is_read(capsys, tmp_path, command):
    out = tmp_path / "out"
    out.write_text("precious")
    code, error, _ = cli(capsys, *COMMANDS[command](out, tmp_path / "absent"))
    assert code == 2, error
    assert str(out) in error["message"] and "is a file" in error["message"] and "absent" not in error["message"]
    assert out.read_text() == "precious" and hidden(tmp_path) == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_output_that_cannot_be_written_is_refused_before_any_input_is_read(capsys, tmp_path, command):
    out = unwritable(tmp_path) / "out"
    try:
        code, error, _ = cli(capsys, *COMMANDS[command](out, tmp_path / "absent"))
    finally:
        if out.parent.is_relative_to(tmp_path):
            out.parent.chmod(0o755)
    assert code == 2, error
    assert str(out) in error["message"] and "nothing can be written" in error["message"]


# -- defect 13: whole folders ----------------------------------------------------------------------
def test_impute_into_a_folder_holding_a_brain_mask_folder_writes_nothing(capsys, tiny_bundle, patient, tmp_path):
    out = tmp_path / "out"
    (out / "brain_mask.nii.gz").mkdir(parents=True)
    for extra in ((), ("--replace",)):
        code, error, events = cli(capsys, *_impute_args(tiny_bundle, patient, out, *extra))
        assert code == 2 and "brain_mask.nii.gz" in error["message"]
        assert not any(e.get("stage") == "synthesize" for e in events)
    assert [p.name for p in out.iterdir()] == ["brain_mask.nii.gz"] and hidden(tmp_path) == []


def test_compare_on_a_disk_that_fills_up_leaves_no_partial_folder(patient, tmp_path):
    out = tmp_path / "cmp"  # error.nii.gz (~30 kB) fits in 40 kB, error.png (~50 kB) does not
    process = child("compare", str(patient / "sub-901_PD.nii.gz"), str(patient / "sub-901_T2.nii.gz"), "--out",
                    str(out), preexec_fn=small_disk(40_000))
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode in (1, 2), stderr  # failed (or a full disk said plainly), not done
    assert json_events(stdout)[-1]["event"] == "error"
    assert not out.exists() and hidden(tmp_path) == []


def test_sigterm_during_a_zip_export_leaves_nothing(run_folder, tmp_path):
    process = exporting_child(run_folder, tmp_path / "model.zip")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    assert list(tmp_path.iterdir()) == []


# -- defect 16: permissions ------------------------------------------------------------------------
def test_bundle_preprocessed_and_imputed_folders_get_the_umasks_mode(run_folder, raw, tiny_bundle, patient, tmp_path):
    previous = os.umask(0o027)
    try:
        bundle = export_run(run_folder, tmp_path / "bundle", baseline=False)
        preprocess_folder(raw, tmp_path / "pre", PreprocessConfig(n4=False, register=False, qc=False))
        impute(tiny_bundle, {"T1": patient / "sub-901_T1.nii.gz"}, tmp_path / "imputed", ImputeOptions(n4=False))
    finally:
        os.umask(previous)
    for folder in (bundle, tmp_path / "pre", tmp_path / "pre" / "sub-000", tmp_path / "imputed"):
        assert folder.stat().st_mode & 0o777 == 0o750, folder


# -- defect 18: leftovers --------------------------------------------------------------------------
def test_temporaries_of_a_zip_export_killed_with_kill_9_are_removed_by_the_next_export(capsys, run_folder, tmp_path):
    process = exporting_child(run_folder, tmp_path / "model.zip")
    process.kill()
    process.wait(timeout=60)
    left = hidden(tmp_path)
    assert left and all(n.startswith(f".model.tmp-{process.pid}-") for n in left)
    code, done, _ = cli(capsys, "export", str(run_folder), str(tmp_path / "model.zip"), "--no-baseline")
    assert code == 0, done
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.zip"]


def test_a_temporary_of_a_process_still_running_is_never_removed(tmp_path):
    writer, temporary = temporary_holder(tmp_path / "a.txt")
    try:
        write_text(tmp_path / "b.txt", "written beside it")
        assert temporary.exists()
    finally:
        writer.kill()
        writer.wait(timeout=30)
    write_text(tmp_path / "b.txt", "and now it is gone")
    assert not temporary.exists()


def test_a_reference_file_that_is_missing_is_refused_before_any_synthesis(capsys, tiny_bundle, patient, tmp_path):
    code, error, events = cli(capsys, *_impute_args(tiny_bundle, patient, tmp_path / "out", "--reference",
                                                    f"PD={tmp_path / 'absent.nii.gz'}"))
    assert code == 2 and "--reference PD" in error["message"] and "absent.nii.gz" in error["message"]
    assert not any(e.get("stage") in ("preprocess", "synthesize") for e in events)
    assert not (tmp_path / "out").exists() and hidden(tmp_path) == []


def test_a_reference_of_a_contrast_not_synthesized_is_refused_before_any_synthesis(capsys, tiny_bundle, patient,
                                                                                   tmp_path):
    code, error, events = cli(capsys, *_impute_args(tiny_bundle, patient, tmp_path / "out", "--reference",
                                                    f"T1={patient / 'sub-901_T1.nii.gz'}"))
    assert code == 2 and "--reference T1" in error["message"] and "not synthesized" in error["message"]
    assert not any(e.get("stage") in ("preprocess", "synthesize") for e in events)
    assert not (tmp_path / "out").exists()


def test_the_attack_list_matches_the_tests():
    tests = [name for name in globals() if name.startswith("test_") and name != "test_the_attack_list_matches_the_tests"]
    assert len(ATTACKS) == len(tests) == 27 and all(" -> " in attack for attack in ATTACKS)
