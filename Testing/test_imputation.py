"""`mrimpute impute`: any given contrasts -> the missing ones, fast paths that match the naive one,
uncertainty, self-check, error maps, refusals and cancellation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import REPO
from MRImputationLib.cli import main
from MRImputationLib.core.errors import InputError
from MRImputationLib.imputation.slice_imputer import SliceImputer, InferenceOptions
from MRImputationLib.pipelines.impute import ImputeOptions, impute
from MRImputationLib.core.io import read_volume
from MRImputationLib.evaluation.metrics import project_metrics
from MRImputationLib.models.bundle_files import seal_document
from MRImputationLib.models.loading import load_model
from MRImputationLib.data.phantom import PhantomConfig, make_subject, write_subject
from MRImputationLib.models.slicing import SlicingConfig


@pytest.fixture(scope="module")
def patient(tmp_path_factory) -> Path:
    """A held-out phantom subject (not among the bundle's training subjects)."""
    folder = tmp_path_factory.mktemp("patient") / "sub-900"
    subject = make_subject(PhantomConfig(shape=(48, 48, 32), misalignment="none", bias_strength=0.05), seed=900,
                           name="sub-900")
    return write_subject(subject, folder)


def _inputs(patient: Path, *names: str) -> dict:
    return {n: patient / f"sub-900_{n}.nii.gz" for n in names}


def test_the_bundle_records_the_normalization_its_training_slices_went_through(tiny_bundle):
    """Imputation repeats what the bundle records, so it must be what training used (read from the
    run's slice cache), not a constant."""
    cache = json.loads((tiny_bundle.parent / "run" / "cache" / "index.json").read_text())
    used = next(iter(next(iter(cache["subjects"].values()))["normalization"].values()))
    recorded = json.loads((tiny_bundle / "bundle.json").read_text())["normalization"]
    assert recorded == {k: used[k] for k in ("method", "lower_percentile", "upper_percentile")}


def test_missing_contrast_is_written_on_the_reference_grid_with_a_report(tiny_bundle, patient, tmp_path):
    report = impute(tiny_bundle, _inputs(patient, "T1", "T2"), tmp_path / "out", ImputeOptions(n4=False))
    synthetic = read_volume(tmp_path / "out" / "PD_synthetic.nii.gz")
    reference = read_volume(patient / "sub-900_T1.nii.gz")
    assert synthetic.same_grid(reference)
    assert report["scenario"] == "110" and report["synthesized"] == ["PD"] and report["reference"] == "T1"
    assert set(report["model_sha256"]) == {"generator.safetensors", "baseline.safetensors"}  # every hashed file of the bundle
    assert {"read_s", "preprocess_s", "synthesize_s", "total_s"} <= set(report["timings"])
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["files"]["synthetic"] == {"PD": "PD_synthetic.nii.gz"}
    mask = read_volume(tmp_path / "out" / "brain_mask.nii.gz").array > 0
    assert np.abs(synthetic.array[mask]).mean() > 0


def test_imputing_gives_the_callers_torch_thread_count_back(tiny_bundle, patient, tmp_path):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        impute(tiny_bundle, _inputs(patient, "T1", "T2"), tmp_path / "out", ImputeOptions(n4=False))
        assert torch.get_num_threads() == 1  # it used every core meanwhile; training in this process keeps one
    finally:
        torch.set_num_threads(before)


def test_inputs_in_another_orientation_and_spacing_land_on_the_reference_grid(tiny_bundle, patient, tmp_path):
    t2 = sitk.ReadImage(str(patient / "sub-900_T2.nii.gz"))
    flipped = sitk.Flip(t2, [True, True, False])  # a RAS-style storage of the same anatomy
    coarse = sitk.Resample(flipped, [s // 2 for s in flipped.GetSize()], sitk.Transform(), sitk.sitkLinear,
                           flipped.GetOrigin(), [2 * s for s in flipped.GetSpacing()], flipped.GetDirection())
    sitk.WriteImage(coarse, str(tmp_path / "t2_coarse.nrrd"))
    report = impute(tiny_bundle, {"T1": patient / "sub-900_T1.nii.gz", "T2": tmp_path / "t2_coarse.nrrd"},
                    tmp_path / "out", ImputeOptions(n4=False, register=False, write_registered=True))
    registered = read_volume(tmp_path / "out" / "T2_registered.nii.gz")
    original = read_volume(patient / "sub-900_T2.nii.gz")
    assert registered.same_grid(original)
    mask = read_volume(tmp_path / "out" / "brain_mask.nii.gz").array > 0
    assert np.corrcoef(registered.array[mask], original.array[mask])[0, 1] > 0.8
    assert report["reference"] == "T1"


@pytest.mark.parametrize("inputs, message", [
    ({"FLAIR": "x"}, "FLAIR is not known to this model"),
    ({"T1": "x", "T2": "x", "PD": "x"}, "nothing is missing"),
    ({}, "no input given"),
])
def test_impossible_requests_are_refused_before_any_work(tiny_bundle, tmp_path, inputs, message):
    with pytest.raises(InputError, match=message):
        impute(tiny_bundle, {k: Path(v) for k, v in inputs.items()}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_scenario_the_bundle_was_not_trained_for_is_refused(tiny_bundle, patient, tmp_path):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    info = json.loads((bundle / "bundle.json").read_text())
    info["scenarios"] = ["110", "101", "011"]  # one-missing only
    (bundle / "bundle.json").write_text(json.dumps(seal_document(info)))  # as an export would write it
    with pytest.raises(InputError, match="not trained for given T1 -> synthesizing T2, PD"):
        impute(bundle, _inputs(patient, "T1"), tmp_path / "out")


def test_inputs_that_do_not_overlap_are_refused(tiny_bundle, patient, tmp_path):
    t2 = sitk.ReadImage(str(patient / "sub-900_T2.nii.gz"))
    t2.SetOrigin([o + 500 for o in t2.GetOrigin()])  # half a metre away
    sitk.WriteImage(t2, str(tmp_path / "far_T2.nii.gz"))
    with pytest.raises(InputError, match="barely overlaps"):
        impute(tiny_bundle, {"T1": patient / "sub-900_T1.nii.gz", "T2": tmp_path / "far_T2.nii.gz"}, tmp_path / "out",
               ImputeOptions(n4=False, register=False))
    assert not (tmp_path / "out").exists()


def _naive_and_fast(tiny_bundle, patient, precision="fp32"):
    """The naive path (every slice, fp32, one at a time) and the fast one, on the same normalized stack."""
    from MRImputationLib.preprocessing.masking import brain_mask
    from MRImputationLib.preprocessing.normalization import NormalizationConfig, fit_normalization, normalize

    model = load_model(tiny_bundle)
    volumes = {n: read_volume(patient / f"sub-900_{n}.nii.gz", n) for n in model.contrasts.names}
    mask = brain_mask(list(volumes.values()))
    stack = np.stack([normalize(volumes[n], fit_normalization(volumes[n], mask, NormalizationConfig())).array
                      for n in model.contrasts.names])
    scenario = model.contrasts.scenario_for(["T1", "T2"])
    frame = volumes["T1"]
    naive = SliceImputer(model.generator, model.model_config, SlicingConfig(size=model.slicing.size, crop=model.slicing.crop,
                                                                        skip_empty=False),
                       InferenceOptions(batch_size=1)).predict(stack, scenario, frame=frame, mask=mask.array > 0)
    fast = SliceImputer(model.generator, model.model_config, SlicingConfig(size=model.slicing.size, crop=model.slicing.crop,
                                                                       skip_empty=True),
                      InferenceOptions(batch_size=16, precision=precision)).predict(stack, scenario, frame=frame,
                                                                                   mask=mask.array > 0)
    return naive, fast, stack, mask.array > 0


def test_fast_fp32_path_equals_the_naive_path_inside_the_brain(tiny_bundle, patient):
    naive, fast, _, mask = _naive_and_fast(tiny_bundle, patient)
    np.testing.assert_allclose(fast[:, mask], naive[:, mask], atol=1e-5)


def test_bf16_stays_within_a_tenth_of_a_db_of_fp32(tiny_bundle, patient):
    _, fp32, stack, mask = _naive_and_fast(tiny_bundle, patient)
    _, bf16, _, _ = _naive_and_fast(tiny_bundle, patient, precision="bf16")
    truth = stack[2]  # PD, the synthesized channel
    psnr32 = project_metrics(fp32[2], truth, mask)["psnr"]
    psnr16 = project_metrics(bf16[2], truth, mask)["psnr"]
    assert abs(psnr32 - psnr16) < 0.1


def test_uncertainty_varies_inside_the_brain_and_is_deterministic_for_a_seed(tiny_bundle, patient, tmp_path):
    options = ImputeOptions(n4=False, uncertainty=4, seed=3)
    impute(tiny_bundle, _inputs(patient, "T1"), tmp_path / "a", options)
    impute(tiny_bundle, _inputs(patient, "T1"), tmp_path / "b", options)
    mask = read_volume(tmp_path / "a" / "brain_mask.nii.gz").array > 0
    for name in ("T2", "PD"):
        a = read_volume(tmp_path / "a" / f"{name}_uncertainty.nii.gz").array
        b = read_volume(tmp_path / "b" / f"{name}_uncertainty.nii.gz").array
        np.testing.assert_array_equal(a, b)
        assert (a[mask] > 0).mean() > 0.9  # dropout makes the synthesis vary almost everywhere in the brain
        assert np.all(a >= 0)


def test_self_check_hides_each_given_contrast_and_scores_it(tiny_bundle, patient, tmp_path):
    report = impute(tiny_bundle, _inputs(patient, "T1", "T2"), tmp_path / "out", ImputeOptions(n4=False, self_check=True))
    rows = {r["hidden"]: r for r in report["self_check"]}
    assert set(rows) == {"T1", "T2"}
    assert rows["T1"]["from"] == ["T2"] and np.isfinite(rows["T1"]["psnr"]) and 0 < rows["T1"]["ssim"] <= 1


def test_reference_option_writes_an_error_map_and_metrics(tiny_bundle, patient, tmp_path):
    report = impute(tiny_bundle, _inputs(patient, "T1", "T2"), tmp_path / "out", ImputeOptions(n4=False),
                    references={"PD": patient / "sub-900_PD.nii.gz"})
    assert (tmp_path / "out" / "PD_error.nii.gz").exists() and (tmp_path / "out" / "PD_error.png").exists()
    assert np.isfinite(report["comparison"]["PD"]["psnr"])


def test_compare_command_writes_error_volume_picture_and_metrics(tiny_bundle, patient, tmp_path):
    impute(tiny_bundle, _inputs(patient, "T1", "T2"), tmp_path / "imp", ImputeOptions(n4=False))
    code = main(["compare", str(tmp_path / "imp" / "PD_synthetic.nii.gz"), str(patient / "sub-900_PD.nii.gz"),
                 "--out", str(tmp_path / "cmp"), "--progress", "none"])
    assert code == 0
    metrics = json.loads((tmp_path / "cmp" / "metrics.json").read_text())
    assert {"psnr", "ssim", "mae"} <= set(metrics)
    error = read_volume(tmp_path / "cmp" / "error.nii.gz")
    assert error.array.min() >= 0 and error.array.max() > 0
    from matplotlib.image import imread

    assert imread(tmp_path / "cmp" / "error.png").shape[2] in (3, 4)


def test_sigterm_during_imputation_exits_130_and_writes_nothing(tiny_bundle, patient, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "MRImputation")}
    process = subprocess.Popen(
        [sys.executable, "-m", "MRImputationLib", "impute", "--model", str(tiny_bundle),
         "--input", f"T1={patient / 'sub-900_T1.nii.gz'}", "--out", str(tmp_path / "out"), "--uncertainty", "500",
         "--no-n4", "--progress", "json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if '"uncertainty"' in line:
            break
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130  # 130, not 0: it stopped inside the 500 passes
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
