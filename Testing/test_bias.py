"""N4 recovers a known smooth multiplicative field (synthetic head and a full-size real case), keeps
the intensity scale, copes with non-positive voxels and refuses unusable input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from conftest import LPS_CASE, real_case
from MRImputationLib.preprocessing.bias import BiasCorrectionResult, N4Config, correct_bias
from MRImputationLib.core.errors import InputError
from MRImputationLib.core.io import read_volume
from MRImputationLib.core.volume import Volume

WM, GM, CSF = 1, 2, 3


def synthetic_head(seed: int = 0, shape=(72, 96, 96), spacing: float = 2.0) -> tuple[Volume, np.ndarray]:
    """A T1-like skull-stripped head on a 2 mm grid: WM 1000, GM 650, CSF 250, texture and noise; and its labels."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[(np.arange(n) - n / 2 + 0.5) * spacing for n in shape], indexing="ij")
    r = np.sqrt((x / 70) ** 2 + (y / 85) ** 2 + (z / 60) ** 2)
    wobble = 0.08 * np.sin(x / 9.0) * np.cos(y / 11.0) * np.sin(z / 7.0 + 1.0)  # folded WM/GM border
    labels = np.zeros(shape, np.uint8)
    labels[r < 1.0] = CSF
    labels[r < 0.93] = GM
    labels[r < 0.7 + wobble] = WM
    ventricles = ((np.abs(x) - 9) / 6) ** 2 + (y / 25) ** 2 + ((z - 8) / 12) ** 2 < 1
    labels[ventricles & (r < 0.5)] = CSF
    image = np.choose(labels, [0.0, 1000.0, 650.0, 250.0]).astype(np.float32)
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    image *= 1 + 0.03 * texture / texture.std()
    image += rng.normal(0, 15, shape) * (labels > 0)
    return Volume(image.astype(np.float32), spacing=(spacing,) * 3, contrast="T1"), labels


def polynomial_field(mask: np.ndarray, seed: int, strength: float = 0.25, order: int = 3) -> np.ndarray:
    """exp of a random polynomial of the given order, spanning ±log(1 + strength) inside the mask."""
    rng = np.random.default_rng(seed)
    z, y, x = (np.linspace(-1, 1, n, dtype=np.float32) for n in mask.shape)
    log = np.zeros(mask.shape, np.float32)
    for i in range(order + 1):
        for j in range(order + 1 - i):
            for k in range(1 if i + j == 0 else 0, order + 1 - i - j):
                plane = np.float32(rng.normal()) * np.outer(z**k, y**j)  # separable: one full-size add per term
                log += plane[:, :, None] * (x**i)[None, None, :]
    log -= 0.5 * (log[mask].max() + log[mask].min())
    log *= np.log1p(strength) / np.abs(log[mask]).max()
    return np.exp(log).astype(np.float32)


def log_correlation(estimated: np.ndarray, true: np.ndarray, mask: np.ndarray) -> float:
    return float(np.corrcoef(np.log(estimated[mask]), np.log(true[mask]))[0, 1])


def coefficient_of_variation(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_known_field_is_recovered_on_a_synthetic_head(seed):
    head, labels = synthetic_head(seed)
    brain = labels > 0
    field = polynomial_field(brain, seed)
    observed = head.with_array(head.array * field)
    result = correct_bias(observed, mask=head.with_array(brain.astype(np.uint8)))
    assert isinstance(result, BiasCorrectionResult) and result.seconds > 0
    assert result.volume.same_grid(observed) and result.bias_field.same_grid(observed)
    assert log_correlation(result.bias_field.array, field, brain) >= 0.95
    assert np.allclose(result.volume.array * result.bias_field.array, observed.array, rtol=1e-4, atol=1e-3)
    # the field is fixed to a geometric mean of 1 in the mask: the intensity scale is kept
    assert abs(np.log(result.bias_field.array[brain]).mean()) < 0.01
    wm = ndimage.binary_erosion(labels == WM, iterations=2)
    before, after, truth = (coefficient_of_variation(a[wm]) for a in (observed.array, result.volume.array, head.array))
    assert after < 0.7 * before and after < 1.1 * truth


@pytest.mark.parametrize("background", ["stripped", "noisy air"])
def test_without_a_mask_the_fallback_foreground_is_used(background):
    head, labels = synthetic_head(2)
    brain = labels > 0
    field = polynomial_field(brain, 2)
    observed = head.array * field
    if background == "noisy air":  # not skull-stripped-like: Rician-like air noise, no exact zeros
        observed[~brain] = np.abs(np.random.default_rng(2).normal(0, 30, (~brain).sum()))
    result = correct_bias(head.with_array(observed.astype(np.float32)))
    assert log_correlation(result.bias_field.array, field, brain) >= 0.95


def test_non_positive_voxels_take_no_part_and_the_scale_is_kept():
    head, labels = synthetic_head(3)
    brain = labels > 0
    field = polynomial_field(brain, 3)
    observed = head.array * field
    observed[~brain] = np.random.default_rng(3).normal(0, 5, (~brain).sum())  # noisy background around 0
    observed[brain & (labels == CSF)] *= -0.01  # interpolation undershoot inside the mask
    volume = head.with_array(observed.astype(np.float32))
    result = correct_bias(volume, mask=head.with_array(brain.astype(np.uint8)), config=N4Config(threads=1))
    assert np.isfinite(result.volume.array).all() and (result.bias_field.array > 0).all()
    tissue = labels == WM
    assert np.median(result.volume.array[tissue]) == pytest.approx(np.median(observed[tissue]), rel=0.15)
    assert log_correlation(result.bias_field.array, field, tissue) >= 0.9
    negative = observed < 0
    assert (result.volume.array[negative] < 0).all()  # divided by a positive field, not shifted or clipped


def test_full_size_real_case_added_field_is_recovered():
    """The real T1 carries its own bias field, so compare what N4 finds with and without the known
    field added: log(field(observed·known) / field(observed)) must follow log(known)."""
    volume = read_volume(real_case(LPS_CASE) / "BraTS-GLI-00001-000-t1n.nii.gz", contrast="t1n")
    assert volume.shape == (155, 240, 240)
    brain = volume.array > 0
    mask = volume.with_array(brain.astype(np.uint8))
    known = polynomial_field(brain, 4)
    own = correct_bias(volume, mask=mask)
    result = correct_bias(volume.with_array(volume.array * known), mask=mask)
    assert log_correlation(result.bias_field.array / own.bias_field.array, known, brain) >= 0.95


def test_unusable_input_is_refused():
    empty = Volume(np.zeros((30, 30, 30), np.float32), source="/data/empty_T1.nii.gz")
    with pytest.raises(InputError, match="empty_T1.nii.gz.*too few positive"):
        correct_bias(empty, mask=empty.with_array(np.ones((30, 30, 30), np.uint8)))
    head, labels = synthetic_head(0, shape=(36, 48, 48), spacing=4.0)
    with pytest.raises(InputError, match="mask has shape"):
        correct_bias(head, mask=Volume(np.ones((10, 10, 10), np.uint8)))
