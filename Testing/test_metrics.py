"""The project metric and the legacy MM-GAN metric (EVALUATION.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from MRImputationLib.core.errors import InputError
from MRImputationLib.evaluation.metrics import evaluation_units, legacy_metrics, paired_test, project_metrics


def head(shape=(4, 40, 40), seed=0):
    """A bright disc ('brain') on a zero background, with texture, and its mask."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    mask = (y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2 < (shape[1] / 4) ** 2
    truth = np.where(mask, rng.uniform(200, 800, shape), 0.0)
    return truth, mask


def test_identical_volumes_score_infinite_psnr_perfect_ssim_and_zero_mae():
    truth, mask = head()
    project = project_metrics(truth, truth, mask)
    assert project["psnr"] == math.inf and project["ssim"] == pytest.approx(1.0) and project["mae"] == 0.0
    legacy = legacy_metrics(truth, truth)
    assert legacy["psnr"] == math.inf and legacy["ssim"] == pytest.approx(1.0)


def test_a_known_mean_squared_error_gives_the_known_psnr_and_mae():
    rng = np.random.default_rng(1)
    truth = rng.choice([400.0, 700.0, 1000.0], size=(3, 24, 24))  # 99.5th percentile is exactly 1000
    mask = np.ones(truth.shape, bool)
    assert evaluation_units(truth, mask) == 1000.0
    metrics = project_metrics(truth - 50.0, truth, mask)  # 0.05 in evaluation units everywhere
    assert metrics["psnr"] == pytest.approx(10 * math.log10(1 / 0.05**2))
    assert metrics["mae"] == pytest.approx(0.05)


def test_background_changes_legacy_but_not_project_metrics():
    truth, mask = head()
    prediction = truth * 0.9 + np.random.default_rng(2).normal(0, 20, truth.shape) * mask
    noisy = prediction + ~mask * np.random.default_rng(5).uniform(0, 300, truth.shape)
    assert project_metrics(noisy, truth, mask) == project_metrics(prediction, truth, mask)
    assert legacy_metrics(noisy, truth)["psnr"] < legacy_metrics(prediction, truth)["psnr"]
    assert legacy_metrics(noisy, truth)["ssim"] < legacy_metrics(prediction, truth)["ssim"]


def test_skull_in_the_truth_outside_the_brain_mask_does_not_enter_the_project_metric():
    truth, mask = head()
    prediction = truth * 0.95
    skull = truth + ~mask * 500.0
    assert project_metrics(prediction, skull, mask) == project_metrics(prediction, truth, mask)


def test_a_global_intensity_error_is_penalised_by_the_project_metric_but_hidden_by_the_legacy_one():
    truth, mask = head()
    too_dark = 0.7 * truth
    project = project_metrics(too_dark, truth, mask)
    assert project["psnr"] < 20 and project["mae"] > 0.1
    legacy = legacy_metrics(too_dark, truth)  # per-slice max normalization divides the error away
    assert legacy["psnr"] > 100 and legacy["ssim"] == pytest.approx(1.0)


def test_project_ssim_equals_scikit_image_on_a_single_slice_with_a_full_mask():
    rng = np.random.default_rng(3)
    truth = rng.uniform(0, 1, (1, 32, 32))
    truth[0, 0, :] = 1.0  # 99.5th percentile of the 1024 voxels is 1: the units are the identity
    prediction = np.clip(truth + rng.normal(0, 0.1, truth.shape), 0, 1)
    mask = np.ones(truth.shape, bool)
    _, ssim_map = structural_similarity(truth[0], prediction[0], gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=1.0, full=True)
    assert project_metrics(prediction, truth, mask)["ssim"] == pytest.approx(ssim_map.mean())


def test_legacy_ssim_averages_only_the_valid_region_of_the_11x11_window():
    rng = np.random.default_rng(4)
    truth = rng.uniform(0.1, 1, (1, 30, 30))
    truth[0, 0, 0] = 1.0
    prediction = truth.copy()
    prediction[0, 10:20, 10:20] *= 0.5
    prediction[0, 0, 0] = 1.0
    _, ssim_map = structural_similarity(truth[0], prediction[0], gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=1.0, full=True)
    assert legacy_metrics(prediction, truth)["ssim"] == pytest.approx(ssim_map[5:-5, 5:-5].mean())


def test_legacy_metric_skips_empty_slices_and_counts_the_scored_ones():
    truth, _ = head()
    truth[0] = 0.0
    assert legacy_metrics(truth * 0.5, truth)["n_slices"] == truth.shape[0] - 1


def test_an_empty_brain_mask_is_refused_with_a_reason():
    truth, mask = head()
    with pytest.raises(InputError, match="mask is empty"):
        project_metrics(truth, truth, np.zeros_like(mask))


def test_slices_smaller_than_the_ssim_window_are_refused():
    with pytest.raises(InputError, match="11x11"):
        project_metrics(np.ones((2, 8, 8)), np.ones((2, 8, 8)), np.ones((2, 8, 8), bool))


def test_paired_test_needs_five_finite_pairs_and_detects_a_consistent_difference():
    assert paired_test([1, 2, 3, 4], [0, 1, 2, 3]) is None
    assert paired_test([1, 2, 3, 4, math.inf], [0, 1, 2, 3, 4]) is None  # the infinite pair is left out
    better = [30.1, 28.4, 31.0, 29.9, 27.5, 30.6, 29.2, 28.8]
    test = paired_test(better, [b - 1.0 - 0.1 * i for i, b in enumerate(better)])
    assert test["n"] == 8 and test["p_value"] < 0.05 and test["median_difference"] > 1
    assert paired_test([1.0] * 6, [1.0] * 6)["p_value"] == 1.0


def test_a_constant_truth_slice_matched_exactly_no_longer_makes_the_legacy_psnr_infinite():
    """The bug: a slice above the head holds one value (background, here a grey 30) in the truth, and
    an imputer that leaves it as background matches it exactly; divided by its own maximum that is
    MSE 0, an infinite PSNR, and the slice average was inf for the whole volume."""
    truth, _ = head()
    truth[0] = 30.0
    prediction = truth * 0.9 + np.random.default_rng(6).normal(0, 10, truth.shape)
    prediction[0] = 30.0
    legacy = legacy_metrics(prediction, truth)
    assert math.isfinite(legacy["psnr"]) and legacy["n_slices"] == truth.shape[0] - 1
    assert legacy["psnr"] == pytest.approx(legacy_metrics(prediction[1:], truth[1:])["psnr"])


def test_a_truth_constant_up_to_float_rounding_is_skipped_but_an_exact_prediction_of_structure_is_perfect():
    truth, _ = head()
    truth[0] = 30.0 + np.random.default_rng(7).uniform(0, 1e-9, truth.shape[1:])  # a round trip's rounding
    assert legacy_metrics(truth * 0.8, truth)["n_slices"] == truth.shape[0] - 1
    assert legacy_metrics(truth, truth)["psnr"] == math.inf  # a perfect prediction stays perfect
    with pytest.raises(InputError, match="constant"):
        legacy_metrics(np.full((2, 16, 16), 5.0), np.full((2, 16, 16), 5.0))
