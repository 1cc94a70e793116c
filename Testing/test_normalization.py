"""Intensity normalization: robust, recorded, and exactly undone on the way out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import LPS_CASE, RAS_CASE, real_case
from MRImputationLib.core.io import read_volume
from MRImputationLib.preprocessing.masking import brain_mask
from MRImputationLib.preprocessing.normalization import (
    NormalizationConfig,
    NormalizationParameters,
    denormalize,
    evaluation_scale,
    fit_normalization,
    normalize,
)
from MRImputationLib.core.volume import Volume


def brain_like(seed: int = 0, scale: float = 1000.0, size: int = 20) -> tuple[Volume, Volume]:
    """A positive 'brain' block (size × size × 0.8 size voxels) with varied intensities on a zero
    background, and its mask."""
    rng = np.random.default_rng(seed)
    depth = int(0.8 * size)
    array = np.zeros((depth + 8, size + 12, size + 12), np.float32)
    array[4 : 4 + depth, 6 : 6 + size, 6 : 6 + size] = scale * rng.gamma(4.0, 0.25, (depth, size, size))
    mask = (array > 0).astype(np.uint8)
    return Volume(array, spacing=(1.0, 1.0, 1.5)), Volume(mask, spacing=(1.0, 1.0, 1.5))


@pytest.mark.parametrize("method", ["percentile", "minmax", "mean"])
def test_normalize_then_denormalize_gives_the_input_back(method):
    volume, mask = brain_like()
    params = fit_normalization(volume, mask, NormalizationConfig(method=method))
    normalized = normalize(volume, params)
    assert normalized.array.dtype == np.float32 and normalized.same_grid(volume)
    restored = denormalize(normalized, params)
    np.testing.assert_allclose(restored.array, volume.array, rtol=1e-6, atol=1e-6 * params.scale)


@pytest.mark.parametrize("method", ["percentile", "minmax"])
def test_round_trip_is_exact_with_negative_values_too(method):
    volume, mask = brain_like()
    shifted = volume.with_array(volume.array - 300.0)
    params = fit_normalization(shifted, mask, NormalizationConfig(method=method))
    restored = denormalize(normalize(shifted, params), params)
    np.testing.assert_allclose(restored.array, shifted.array, rtol=1e-6, atol=1e-6 * params.scale)


def test_percentile_method_maps_the_masked_percentiles_to_zero_and_one_and_keeps_background_linear():
    volume, mask = brain_like()
    params = fit_normalization(volume, mask, NormalizationConfig(lower_percentile=1.0, upper_percentile=99.0))
    normalized = normalize(volume, params).array
    inside = normalized[mask.array > 0]
    np.testing.assert_allclose(np.percentile(inside, [1.0, 99.0]), [0.0, 1.0], atol=1e-5)
    outside = normalized[mask.array == 0]  # raw 0, mapped by the same line, not forced to 0
    np.testing.assert_allclose(outside, -params.offset / params.scale, rtol=1e-6)
    assert outside.max() < 0


def test_percentile_scale_barely_moves_when_a_few_voxels_are_extreme():
    volume, mask = brain_like(size=60)
    before = fit_normalization(volume, mask, NormalizationConfig())
    spoiled = volume.array.copy()
    inside = np.argwhere(mask.array > 0)[::9973][:20]  # 20 scattered brain voxels out of 172800
    spoiled[tuple(inside.T)] = 1e7
    after = fit_normalization(volume.with_array(spoiled), mask, NormalizationConfig())
    assert abs(after.scale / before.scale - 1) < 0.02
    assert abs(after.offset - before.offset) < 0.01 * before.scale
    minmax = fit_normalization(volume.with_array(spoiled), mask, NormalizationConfig(method="minmax"))
    assert minmax.scale > 100 * before.scale  # what the robust method protects against


def test_real_cases_with_tenfold_different_scales_map_to_similar_ranges():
    volumes = [read_volume(next(real_case(case).glob("*-t1c.nii.gz"))) for case in (LPS_CASE, RAS_CASE)]
    masks = [brain_mask(v) for v in volumes]
    raw = [np.percentile(v.array[m.array > 0], 99.5) for v, m in zip(volumes, masks)]
    assert max(raw) / min(raw) > 5  # the cases really differ in scale
    quantiles = []
    for volume, mask in zip(volumes, masks):
        params = fit_normalization(volume, mask, NormalizationConfig())
        quantiles.append(np.percentile(normalize(volume, params).array[mask.array > 0], [5, 25, 50, 75, 95]))
    np.testing.assert_allclose(quantiles[0], quantiles[1], atol=0.1)


def test_mean_method_divides_by_the_whole_volume_mean_and_zeroes_negatives():
    volume, mask = brain_like()
    array = volume.array.copy()
    array[0, 0, :5] = -50.0
    params = fit_normalization(volume.with_array(array), mask, NormalizationConfig(method="mean"))
    assert params.offset == 0.0 and params.scale == pytest.approx(float(array.mean(dtype=np.float64)))
    normalized = normalize(volume.with_array(array), params).array
    assert normalized.min() == 0.0
    assert normalized.mean() == pytest.approx(array.clip(0).mean() / params.scale, rel=1e-5)


def test_clipping_keeps_values_in_the_unit_range():
    volume, mask = brain_like()
    params = fit_normalization(volume, mask, NormalizationConfig(clip=True))
    normalized = normalize(volume, params).array
    assert normalized.min() == 0.0 and normalized.max() == 1.0
    assert (params.clip_low, params.clip_high) == (0.0, 1.0)


def test_parameters_survive_a_json_round_trip():
    volume, mask = brain_like()
    params = fit_normalization(volume, mask, NormalizationConfig())
    text = json.dumps(params.to_dict())
    again = NormalizationParameters.from_dict(json.loads(text))
    assert again == params
    np.testing.assert_array_equal(normalize(volume, again).array, normalize(volume, params).array)
    assert NormalizationParameters.from_dict({**params.to_dict(), "added_later": 1}) == params
    with pytest.raises(ValueError, match="scale"):
        NormalizationParameters.from_dict({"method": "percentile", "offset": 0.0})


def test_bad_inputs_are_refused_with_a_reason():
    volume, mask = brain_like()
    with pytest.raises(ValueError, match="empty"):
        fit_normalization(volume, mask.with_array(np.zeros_like(mask.array)), NormalizationConfig())
    with pytest.raises(ValueError, match="shape"):
        fit_normalization(volume, np.ones((2, 2, 2), bool), NormalizationConfig())
    with pytest.raises(ValueError, match="unknown normalization method"):
        NormalizationConfig(method="zscore")
    with pytest.raises(ValueError, match="percentiles"):
        NormalizationConfig(lower_percentile=90, upper_percentile=10)


def test_evaluation_scale_is_the_995th_percentile_of_the_truth_inside_the_mask():
    volume, mask = brain_like()
    expected = np.percentile(volume.array[mask.array > 0], 99.5)
    assert evaluation_scale(volume.array, mask.array) == pytest.approx(expected)
    assert evaluation_scale(volume, mask) == pytest.approx(expected)
    with pytest.raises(ValueError, match="empty"):
        evaluation_scale(volume.array, np.zeros(volume.shape, bool))
