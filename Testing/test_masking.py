"""Brain and head masks: exact on skull-stripped scans, a sound approximation on whole heads."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from conftest import BRAINLESION_CASE, LPS_CASE, real_case
from MRImputationLib.core.io import read_volume
from MRImputationLib.preprocessing.masking import brain_mask, head_mask, is_skull_stripped
from MRImputationLib.core.volume import Volume


def synthetic_head(spacing=(1.5, 1.5, 2.0), seed: int = 0):
    """A non-stripped head: brain-like ellipsoid (white matter core, dark ventricles), a dark
    skull layer, a bright scalp ring, Rician-like noise everywhere (also in the air).

    Returns (volume, brain ellipsoid, scalp ring, whole head), the masks as (z, y, x) bool arrays.
    """
    rng = np.random.default_rng(seed)
    brain_axes = np.array([45.0, 55.0, 48.0])  # z, y, x semi-axes in mm
    size_mm = 2 * (brain_axes + 12) + 24
    spacing_zyx = np.array(spacing[::-1])
    shape = tuple(int(n) for n in np.ceil(size_mm / spacing_zyx))
    grids = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing_zyx)], indexing="ij")

    def inside(axes) -> np.ndarray:
        return sum((g / a) ** 2 for g, a in zip(grids, axes)) < 1

    brain, skull, head = inside(brain_axes), inside(brain_axes + 6), inside(brain_axes + 12)
    image = np.where(head, 1.0, 0.0)
    image[skull] = 0.08
    image[brain] = 0.65
    image[inside(brain_axes * 0.6)] = 0.9
    image[inside(brain_axes * [0.25, 0.15, 0.3])] = 0.25
    noisy = np.abs(800 * image + rng.normal(0, 20, shape) + 1j * rng.normal(0, 20, shape))
    return Volume(noisy.astype(np.float32), spacing=spacing), brain, head & ~skull, head


@pytest.fixture(scope="module")
def lps_case() -> list[Volume]:
    folder = real_case(LPS_CASE)
    return [read_volume(p) for p in sorted(folder.glob("*.nii.gz"))]


def test_real_skull_stripped_case_is_recognised_and_masked_as_its_nonzero_region(lps_case):
    assert all(is_skull_stripped(v) for v in lps_case)
    mask = brain_mask(lps_case)
    nonzero = np.any([v.array != 0 for v in lps_case], axis=0)
    assert mask.array.dtype == np.uint8 and set(np.unique(mask.array)) == {0, 1}
    assert mask.same_grid(lps_case[0])
    disagreement = np.count_nonzero((mask.array > 0) != nonzero) / np.count_nonzero(nonzero)
    assert disagreement < 0.005


def test_stripped_case_with_negative_interpolation_values_keeps_zero_as_background():
    volume = read_volume(next(real_case(BRAINLESION_CASE).glob("*_t1.nii.gz")))
    assert volume.array.min() < 0  # the minimum is not the background here
    assert is_skull_stripped(volume)
    mask = brain_mask(volume).array > 0
    assert np.count_nonzero(mask != (volume.array != 0)) / np.count_nonzero(volume.array) < 0.005
    np.testing.assert_array_equal(head_mask(volume).array, mask)


def test_enclosed_background_pockets_are_filled_and_specks_dropped():
    array = np.zeros((30, 30, 30), np.int16)
    array[5:25, 5:25, 5:25] = 100
    array[14:16, 14:16, 14:16] = 0  # a small hole inside
    array[1, 1, 1] = 50  # an isolated speck
    mask = brain_mask(Volume(array, spacing=(2.0, 2.0, 2.0))).array
    assert mask[15, 15, 15] == 1 and mask[1, 1, 1] == 0
    assert int(mask.sum()) == 20**3


def test_union_of_volumes_on_another_grid_lands_on_the_first_volume_grid():
    first = np.zeros((20, 20, 20), np.int16)
    first[5:15, 5:10, 5:15] = 10
    second = np.zeros((10, 10, 10), np.int16)  # 2 mm voxels covering the same 20 mm box
    second[3:7, 5:7, 3:7] = 10  # physical y 10-14 mm: beyond the first volume's object
    mask = brain_mask([Volume(first), Volume(second, spacing=(2.0, 2.0, 2.0), origin=(0.5, 0.5, 0.5))])
    assert mask.shape == first.shape
    assert mask.array[10, 12, 10] == 1 and mask.array[10, 7, 10] == 1


def test_non_stripped_head_gives_a_head_mask_and_a_brain_estimate_without_the_scalp():
    volume, brain, scalp, head = synthetic_head()
    assert not is_skull_stripped(volume)
    heads = head_mask(volume).array > 0
    assert heads[head].mean() > 0.98
    beyond = ndi.distance_transform_edt(~head, sampling=volume.spacing[::-1])
    assert np.count_nonzero(heads & (beyond > 2.5)) < 0.002 * np.count_nonzero(head)  # hugs the scalp
    estimate = brain_mask(volume).array > 0
    assert estimate.dtype == bool and estimate.shape == volume.shape
    assert estimate[brain].mean() > 0.9  # most of the brain, ventricles included
    assert estimate[scalp].mean() < 0.05  # hardly any scalp
    assert np.count_nonzero(estimate & ~brain) < 0.1 * np.count_nonzero(brain)


def test_non_stripped_head_padded_with_zeros_is_not_taken_for_a_stripped_one():
    volume, brain, _, _ = synthetic_head(spacing=(2.0, 2.0, 2.0))
    padded = Volume(np.pad(volume.array, 25), spacing=volume.spacing)
    assert np.mean(padded.array == 0) > 0.5
    assert not is_skull_stripped(padded)
    estimate = brain_mask(padded).array[25:-25, 25:-25, 25:-25] > 0
    assert estimate[brain].mean() > 0.9


def test_methods_can_be_forced_and_unknown_ones_are_refused():
    volume, brain, _, _ = synthetic_head(spacing=(2.0, 2.0, 2.0))
    assert brain_mask(volume, method="nonzero").array.all()  # noise is never exactly zero
    assert brain_mask(volume, method="estimate").array[brain].mean() > 0.9
    with pytest.raises(ValueError, match="unknown brain mask method"):
        brain_mask(volume, method="bet")
    with pytest.raises(ValueError):
        brain_mask([])
