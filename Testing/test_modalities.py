"""Contrast sets, scenarios and contrast names in file names."""

from __future__ import annotations

import pytest

from MRImputationLib.core.errors import InputError
from MRImputationLib.core.contrasts import BRATS, IXI, ContrastSet, Scenario, contrast_from_filename, contrasts_in_folder


def test_three_contrasts_give_six_scenarios_easiest_first():
    bits = [s.bits for s in IXI.scenarios()]
    assert len(bits) == 6 == len(set(bits))
    assert [s.count("0") for s in bits] == [1, 1, 1, 2, 2, 2]


def test_four_contrasts_give_fourteen_scenarios_sorted_by_missing_count():
    scenarios = BRATS.scenarios()
    assert len(scenarios) == 14
    missing = [s.n_missing for s in scenarios]
    assert missing == sorted(missing) and missing[0] == 1 and missing[-1] == 3


def test_scenario_bits_follow_channel_order_with_one_meaning_available():
    scenario = IXI.scenario_for(["T2", "PD"])
    assert scenario.bits == "011"
    assert scenario.missing(IXI) == ("T1",)
    assert "synthesizing T1" in scenario.describe(IXI)


@pytest.mark.parametrize("bits", ["111", "000", "01a", ""])
def test_invalid_scenarios_are_refused(bits):
    with pytest.raises(InputError):
        Scenario(bits)


def test_unknown_contrast_in_a_scenario_is_refused_listing_the_known_ones():
    with pytest.raises(InputError, match="FLAIR.*T1, T2, PD"):
        IXI.scenario_for(["T1", "FLAIR"])


def test_contrast_set_canonicalises_aliases_and_checks_the_reference():
    assert ContrastSet.parse("t1n,t1ce,t2w,t2f").names == ("T1", "T1c", "T2", "FLAIR")
    with pytest.raises(InputError, match="reference"):
        ContrastSet(("T1", "T2"), reference="PD")


@pytest.mark.parametrize(
    "name, contrast",
    [
        ("IXI002-Guys-0828-T1.nii.gz", "T1"),
        ("IXI012-HH-1211-PD.nii.gz", "PD"),
        ("IXI013-HH-1212-T2.nii.gz", "T2"),
        ("BraTS2021_00000_t1.nii.gz", "T1"),
        ("BraTS2021_00000_t1ce.nii.gz", "T1c"),
        ("BraTS2021_00000_flair.nii.gz", "FLAIR"),
        ("BraTS-GLI-00001-000-t1n.nii.gz", "T1"),
        ("BraTS-GLI-00001-000-t1c.nii.gz", "T1c"),
        ("BraTS-GLI-00001-000-t2w.nii.gz", "T2"),
        ("BraTS-GLI-00001-000-t2f.nii.gz", "FLAIR"),
        ("TCGA-DU-7294_fla.nii.gz", "FLAIR"),
        ("TCGA-DU-7294_t1c.nii.gz", "T1c"),
        ("sub-000_PD.nrrd", "PD"),
    ],
)
def test_contrast_names_are_recognised_in_the_usual_schemes(name, contrast):
    assert contrast_from_filename(name) == contrast


def test_segmentations_are_not_contrasts():
    assert contrast_from_filename("BraTS-GLI-00001-000-seg.nii.gz") is None


def test_unknown_and_ambiguous_names_are_errors_listing_what_was_found():
    with pytest.raises(InputError, match="no contrast name recognised"):
        contrast_from_filename("patient_scan_3.nii.gz")
    with pytest.raises(InputError, match=r"ambiguous.*T1, T2"):
        contrast_from_filename("case_t1_t2_fused.nii.gz")


def test_two_files_of_one_contrast_in_a_folder_are_an_error(tmp_path):
    for name in ("a_t1.nii.gz", "a_t1n.nii.gz", "a_t2.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(InputError, match=r"several files for one contrast \(T1 in a_t1.nii.gz, a_t1n.nii.gz\)"):
        contrasts_in_folder(tmp_path)
