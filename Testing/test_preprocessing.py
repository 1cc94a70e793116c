"""`mrimpute preprocess` end to end: the phantom's known misalignment and bias are undone, and a
real case goes through the whole pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import BRAINLESION_CASE, real_case
from MRImputationLib.cli import main
from MRImputationLib.pipelines.demo import registration_errors
from MRImputationLib.core.errors import InputError
from MRImputationLib.core.io import read_volume
from MRImputationLib.preprocessing.subject import choose_reference
from MRImputationLib.core.volume import Volume


@pytest.fixture(scope="module")
def preprocessed_phantom(phantom_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("preprocessed")
    assert main(["preprocess", str(phantom_folder), str(out), "--reference", "T1", "--jobs", "2",
                 "--progress", "none"]) == 0
    return out


def test_registration_undoes_the_phantoms_known_misalignment_to_within_a_millimetre(preprocessed_phantom,
                                                                                    phantom_folder):
    manifest = json.loads((preprocessed_phantom / "manifest.json").read_text())
    rows = registration_errors(manifest, phantom_folder)
    assert len(rows) == 4  # two subjects, T2 and PD each
    assert max(r["misalignment_mm"] for r in rows) > 1.5  # there was something to undo
    assert all(r["residual_mm"] <= 1.0 for r in rows), rows


def test_n4_field_correlates_with_the_phantoms_true_bias_field():
    from MRImputationLib.preprocessing.bias import correct_bias
    from MRImputationLib.preprocessing.masking import head_mask
    from MRImputationLib.data.phantom import PhantomConfig, make_subject

    # An adult-sized head (192 x 192 x 120 mm): N4's control-point spacing is set for real heads.
    # Measured here: T2 0.85, PD 0.85, T1 0.71 (its bright scalp fat); the phantom's own smooth
    # tissue texture is indistinguishable from bias, so the ceiling is below the real cases' 0.97.
    subject = make_subject(PhantomConfig(shape=(128, 128, 80), spacing=(1.5, 1.5, 1.5), bias_strength=0.25), seed=5)
    brain = subject.brain_mask.array > 0
    for name in ("T2", "PD"):
        observed = subject.observed[name]
        result = correct_bias(observed, mask=head_mask(observed))
        estimated = np.log(result.bias_field.array[brain])
        true = np.log(subject.bias_fields[name].array[brain])
        assert np.corrcoef(estimated, true)[0, 1] >= 0.8, name


def test_outputs_are_on_the_reference_grid_with_mask_qc_and_manifest(preprocessed_phantom, phantom_folder):
    manifest = json.loads((preprocessed_phantom / "manifest.json").read_text())
    record = manifest["subjects"][0]
    assert record["status"] == "ok" and record["reference"] == "T1"
    reference = read_volume(phantom_folder / "sub-000" / "sub-000_T1.nii.gz")
    for name in ("T1", "T2", "PD"):
        assert read_volume(preprocessed_phantom / record["outputs"][name]).same_grid(reference)
        params = record["steps"]["normalization"][name]
        assert params["method"] == "percentile" and params["scale"] > 0
    mask = read_volume(preprocessed_phantom / record["mask"])
    truth_mask = read_volume(phantom_folder / "sub-000" / "truth" / "sub-000_brainmask.nii.gz").array > 0
    dice = 2 * (mask.array.astype(bool) & truth_mask).sum() / (mask.array.astype(bool).sum() + truth_mask.sum())
    assert dice > 0.85
    assert {"qc" in q for q in record["qc"]} == {True}
    for picture in record["qc"]:
        assert (preprocessed_phantom / picture).stat().st_size > 1000
    assert manifest["config"]["registration_kind"] == "rigid" and set(record["steps"]["n4"]) == {"T1", "T2", "PD"}


def test_the_tumour_mask_comes_along_onto_the_reference_grid_and_into_the_manifest(preprocessed_phantom,
                                                                                 phantom_folder):
    from MRImputationLib.preprocessing.preprocessed import load_subjects
    from MRImputationLib.core.contrasts import IXI

    manifest = json.loads((preprocessed_phantom / "manifest.json").read_text())
    for record in manifest["subjects"]:
        name = record["subject"]
        assert record["tumour_mask"] == f"{name}/{name}_tumour_mask.nii.gz"
        assert record["steps"]["tumour_mask"]["on_grid_of"] == "T1" and record["steps"]["tumour_mask"]["voxels"] > 0
        mask = read_volume(preprocessed_phantom / record["tumour_mask"])
        seg = read_volume(phantom_folder / name / f"{name}_seg.nii.gz")
        assert mask.same_grid(read_volume(preprocessed_phantom / record["outputs"]["T1"]))
        assert np.array_equal(mask.array, seg.array)  # the seg lies on the reference (T1): taken as it is
    (loaded,) = load_subjects(preprocessed_phantom, [manifest["subjects"][0]["subject"]], IXI)
    assert loaded.tumour.dtype == bool and loaded.tumour.shape == loaded.mask.shape and loaded.tumour.any()


def test_a_tumour_mask_on_another_contrasts_grid_follows_that_contrasts_registration(tmp_path):
    """A mask drawn on FLAIR, whose grid is 3 mm off the reference's: the registration (FLAIR's
    point = reference point + 3 mm in x) brings it back to the same voxels; position alone would not."""
    from MRImputationLib.core.io import write_volume
    from MRImputationLib.preprocessing.subject import PreprocessedSubject, tumour_mask_on_reference

    t1 = Volume(np.zeros((8, 20, 30), np.float32), spacing=(1, 1, 1), origin=(0, 0, 0))
    flair = Volume(np.zeros((8, 20, 30), np.float32), spacing=(1, 1, 1), origin=(3, 0, 0))
    seg = np.zeros((8, 20, 30), np.uint8)
    seg[2:6, 5:15, 10:20] = 1
    write_volume(flair.with_array(seg), tmp_path / "s_seg.nii.gz")
    shift = np.eye(4)
    shift[0, 3] = 3.0
    record = {"reference": "T1", "contrasts": ["T1", "FLAIR"],
              "steps": {"registration": {"FLAIR": {"fixed_to_moving": shift.tolist()}}}}
    pre = PreprocessedSubject("s", {"T1": t1, "FLAIR": flair}, t1, record)
    mask, how = tumour_mask_on_reference(tmp_path / "s_seg.nii.gz", {"T1": t1, "FLAIR": flair}, pre)
    assert mask.same_grid(t1) and np.array_equal(mask.array, seg)
    assert how["on_grid_of"] == "FLAIR" and "registration" in how["how"]
    del record["steps"]["registration"]["FLAIR"]  # not registered: by position, 3 voxels over
    mask, how = tumour_mask_on_reference(tmp_path / "s_seg.nii.gz", {"T1": t1, "FLAIR": flair}, pre)
    assert np.array_equal(mask.array[:, :, 13:23], seg[:, :, 10:20]) and mask.array.sum() == seg.sum()


def test_reference_defaults_to_the_finest_grid():
    fine = Volume(np.zeros((4, 4, 4), np.float32), spacing=(1, 1, 1))
    coarse = Volume(np.zeros((4, 4, 4), np.float32), spacing=(1, 1, 3))
    assert choose_reference({"T1": coarse, "PD": fine}) == "PD"
    assert choose_reference({"T2": fine, "T1": fine}) == "T1"  # tie: T1 first
    with pytest.raises(InputError, match="reference contrast FLAIR"):
        choose_reference({"T1": fine}, "FLAIR")


@pytest.mark.slow
def test_a_real_case_goes_through_mrimpute_preprocess(tmp_path):
    case = real_case(BRAINLESION_CASE)
    source = tmp_path / "raw" / case.name
    source.mkdir(parents=True)
    for file in case.iterdir():  # a copy in tmp so the shared folder stays read-only and untouched
        shutil.copy(file, source / file.name)
    assert main(["preprocess", str(tmp_path / "raw"), str(tmp_path / "out"), "--progress", "none"]) == 0
    record = json.loads((tmp_path / "out" / "manifest.json").read_text())["subjects"][0]
    assert record["status"] == "ok" and record["reference"] == "T1"
    assert set(record["outputs"]) == {"T1", "T1c", "T2", "FLAIR"}
    t1 = read_volume(case / "TCGA-DU-7294_t1.nii.gz")
    for name in ("T1c", "T2", "FLAIR"):  # already co-registered: registration must stay near identity
        matrix = np.asarray(record["steps"]["registration"][name]["fixed_to_moving"])
        mask = read_volume(tmp_path / "out" / record["mask"]).array > 0
        points = t1.index_to_physical(np.argwhere(mask)[::50, ::-1])
        moved = points @ matrix[:3, :3].T + matrix[:3, 3]
        assert np.linalg.norm(moved - points, axis=1).mean() < 1.0, name
    mask = read_volume(tmp_path / "out" / record["mask"]).array > 0
    union = np.any([read_volume(f).array != 0 for f in case.iterdir()], axis=0)  # skull-stripped: non-zero is brain
    assert (union & ~mask).sum() < 0.01 * union.sum()  # the whole brain is in the mask
    assert mask.sum() < 1.1 * union.sum()  # plus filled enclosed pockets, not the background
