"""The training panel's data-folder field, decided without Slicer: read once typing pauses, never walk
more than a bounded part of the disk, keep the output folder beside the data until the user picks one."""

from __future__ import annotations

import doctest
import os
import time
from pathlib import Path

import pytest

from MRImputationLib.core.errors import InputError
from MRImputationLib.slicer import training_decisions
from MRImputationLib.slicer.background import BackgroundTask
from MRImputationLib.slicer.training_decisions import (FolderInput, check_scan_bounds, output_suggestion,
                                                       summarize_data)


def _touch(folder: Path, *names: str) -> Path:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).touch()
    return folder


def test_the_decisions_doctests_hold():
    assert doctest.testmod(training_decisions).failed == 0


def test_typing_settles_once_on_the_last_text_and_an_older_scan_is_stale():
    field = FolderInput("/data/old")
    assert field.settle() is None and not field.waiting  # nothing typed
    for text in ("/", "/d", "/da", "/data/ixi "):
        field.typed(text)
    assert field.waiting
    assert field.settle() == "/data/ixi" and not field.waiting
    assert field.settle() is None  # Enter after the pause: already read
    assert field.wanted("/data/ixi") and not field.wanted("/data/old")
    field.typed("/data/ixi")  # the same text again (e.g. the history entry re-selected): nothing to read
    assert field.settle() is None


def test_clearing_the_field_settles_to_an_empty_path():
    field = FolderInput("/data/ixi")
    field.typed("")
    assert field.settle() == "" and field.wanted("")


def test_the_output_follows_the_data_folder_until_the_user_chooses_one():
    first = output_suggestion("/data/ixi", "", "")
    assert first == str(Path("/data/ixi-training"))
    second = output_suggestion("/data/brats/", first, first)  # still the suggestion: it follows
    assert second == str(Path("/data/brats-training"))
    assert output_suggestion("/data/other", "/runs/mine", second) is None  # the user's own: kept
    assert output_suggestion("", second, second) == ""  # data cleared: so is its suggestion
    assert output_suggestion("/", "", "") == ""  # nothing sensible beside a root
    relative = output_suggestion("ixi", "", "")
    assert Path(relative).is_absolute() and Path(relative).name == "ixi-training"


def test_a_folder_of_subjects_is_read_within_the_bounds(tmp_path):
    _touch(tmp_path, "IXI002-Guys-0828-T1.nii.gz", "IXI002-Guys-0828-T2.nii.gz",
           "IXI012-HH-1211-T1.nii.gz", "IXI012-HH-1211-T2.nii.gz", "truth/deep/er/still/and/more/x.nii.gz")
    assert check_scan_bounds(tmp_path, max_entries=10, max_depth=2) == 5  # 4 files and the skipped truth/ folder
    summary = summarize_data(tmp_path, max_entries=10, max_depth=2)
    assert sorted(summary.subjects) == ["IXI002-Guys-0828", "IXI012-HH-1211"]


def test_too_many_files_stop_the_walk_with_a_message_saying_so(tmp_path):
    _touch(tmp_path, *[f"sub-{i:03d}_T1.nii.gz" for i in range(30)])
    with pytest.raises(InputError, match=r"stopped reading after 20 files and folders.*Choose the folder"):
        summarize_data(tmp_path, max_entries=20)


def test_too_deep_a_tree_stops_the_walk_with_a_message_saying_so(tmp_path):
    _touch(tmp_path, "a/b/c/sub-001_T1.nii.gz")
    with pytest.raises(InputError, match=r"more than 2 levels deep \(e\.g\. a.b.c\)"):
        check_scan_bounds(tmp_path, max_depth=2)
    assert check_scan_bounds(tmp_path, max_depth=3) == 4


def test_a_preprocessed_folder_is_read_from_its_manifest_without_walking(tmp_path):
    import json

    from MRImputationLib.preprocessing.manifest import MANIFEST_FORMAT, MANIFEST_NAME

    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": MANIFEST_FORMAT, "subjects": [
        {"subject": "s1", "status": "ok", "outputs": {"T1": "a", "T2": "b"}}]}))
    _touch(tmp_path, *[f"junk/{i}.txt" for i in range(50)])
    summary = summarize_data(tmp_path, max_entries=5)
    assert summary.preprocessed and list(summary.subjects) == ["s1"]


@pytest.mark.skipif(not Path("/usr").is_dir(), reason="needs a large real folder tree")
def test_typing_the_root_is_bounded_and_runs_off_the_calling_thread():
    start = time.monotonic()
    task = BackgroundTask(lambda report: summarize_data("/usr" if os.name != "nt" else "C:\\"), "scan").start()
    assert time.monotonic() - start < 0.5  # the caller (the GUI thread) is back at once
    task.wait(timeout=60)
    assert task.finished and isinstance(task.error, InputError)
    assert "stopped reading after" in str(task.error) or "levels deep" in str(task.error)
