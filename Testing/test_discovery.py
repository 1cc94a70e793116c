"""Subjects are found in the usual folder layouts."""

from __future__ import annotations

import pytest

from conftest import REAL_DATA, real_case
from MRImputationLib.data.discovery import discover_subjects
from MRImputationLib.core.errors import InputError


def _touch(folder, *names):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_ixi_flat_tarball_contents_group_by_subject(tmp_path):
    _touch(tmp_path, "IXI002-Guys-0828-T1.nii.gz", "IXI002-Guys-0828-T2.nii.gz", "IXI002-Guys-0828-PD.nii.gz",
           "IXI012-HH-1211-T1.nii.gz", "IXI012-HH-1211-T2.nii.gz")
    subjects = discover_subjects(tmp_path)
    assert [s.subject for s in subjects] == ["IXI002-Guys-0828", "IXI012-HH-1211"]
    assert subjects[0].has(["T1", "T2", "PD"]) and not subjects[1].has(["PD"])


def test_brats_2021_folders_skip_segmentations(tmp_path):
    _touch(tmp_path, *(f"BraTS2021_00000/BraTS2021_00000_{c}.nii.gz" for c in ("t1", "t1ce", "t2", "flair", "seg")))
    (subject,) = discover_subjects(tmp_path)
    assert subject.subject == "BraTS2021_00000" and sorted(subject.files) == ["FLAIR", "T1", "T1c", "T2"]


def test_one_folder_per_subject_with_bare_contrast_names(tmp_path):
    _touch(tmp_path, "case7/t1.nii.gz", "case7/t2.nii.gz", "case8/T1.nrrd", "case8/PD.nrrd")
    assert [(s.subject, sorted(s.files)) for s in discover_subjects(tmp_path)] == [
        ("case7", ["T1", "T2"]), ("case8", ["PD", "T1"])]


def test_the_shared_real_cases_are_found_with_four_contrasts():
    subjects = discover_subjects(real_case(REAL_DATA))
    assert len(subjects) == 3 and all(s.has(["T1", "T1c", "T2", "FLAIR"]) for s in subjects)


def test_contrast_filter_and_truth_folders(tmp_path):
    _touch(tmp_path, "sub-000/sub-000_T1.nii.gz", "sub-000/sub-000_PD.nii.gz", "sub-000/truth/sub-000_T1.nii.gz")
    (subject,) = discover_subjects(tmp_path, contrasts=["T1"])
    assert list(subject.files) == ["T1"] and subject.files["T1"].parent.name == "sub-000"


def test_an_empty_folder_is_a_clear_error(tmp_path):
    _touch(tmp_path, "notes.txt", "scan_3.nii.gz")
    with pytest.raises(InputError, match="no subject images found.*scan_3.nii.gz"):
        discover_subjects(tmp_path)


def test_a_seg_file_is_its_subjects_tumour_mask_never_a_contrast(tmp_path):
    _touch(tmp_path, *(f"TCGA_CS_4943_20000902/TCGA_CS_4943_20000902_{c}.nii.gz" for c in ("t1", "t1c", "fla", "seg")),
           "case8/t1.nii.gz", "case8/pd.nii.gz", "orphan_seg.nii.gz")
    lgg, case8 = discover_subjects(tmp_path)
    assert lgg.subject == "TCGA_CS_4943_20000902" and sorted(lgg.files) == ["FLAIR", "T1", "T1c"]
    assert lgg.labels == {"tumour": tmp_path / "TCGA_CS_4943_20000902" / "TCGA_CS_4943_20000902_seg.nii.gz"}
    assert case8.labels == {}  # the orphan seg file belongs to no subject with images: ignored


def test_two_tumour_masks_for_one_subject_are_refused(tmp_path):
    _touch(tmp_path, "s1/s1_t1.nii.gz", "s1/s1_seg.nii.gz", "s1/s1-seg.nii.gz")
    with pytest.raises(InputError, match="two tumour label files"):
        discover_subjects(tmp_path)
