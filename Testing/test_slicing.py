"""Volumes to square axial slices and back: orientation, cropping, skipping, invertibility."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from MRImputationLib.core.errors import InputError
from MRImputationLib.models.slicing import (
    SliceGeometry,
    axial_frame,
    from_slices,
    mask_to_slices,
    plan_slices,
    to_slices,
)
from MRImputationLib.core.volume import Volume

SHAPE = (24, 44, 40)  # z, y, x


def smooth_volume() -> Volume:
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in SHAPE), indexing="ij")
    array = np.sin(x / 7.0) + np.cos(y / 9.0) + z / 20.0 + 2.0
    return Volume(array.astype(np.float32), spacing=(1.0, 1.0, 2.0), origin=(-20.0, -22.0, -24.0))


def brain_mask() -> np.ndarray:
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    inside = ((z - 12) / 7.0) ** 2 + ((y - 20) / 14.0) ** 2 + ((x - 21) / 11.0) ** 2 <= 1.0
    return inside.astype(np.uint8)


def inside_box(geometry: SliceGeometry, shrink: int = 0) -> np.ndarray:
    """Voxels of the (axial, unflipped) test volume that the box and the kept slices cover."""
    covered = np.zeros(SHAPE, bool)
    (r0, r1, c0, c1), (s0, s1) = geometry.crop_box, geometry.slice_range
    covered[s0:s1, max(r0, 0) + shrink:r1 - shrink, max(c0, 0) + shrink:c1 - shrink] = True
    return covered


def test_axis_detection_for_axial_ras_and_permuted_directions():
    assert axial_frame(np.eye(3).ravel()) == ((0, 1, 2), (False, False, False))
    assert axial_frame((-1, 0, 0, 0, -1, 0, 0, 0, 1)) == ((0, 1, 2), (False, True, True))
    # Array axis 0 (index z) runs along physical y (A-P), array axis 2 (index x) along S-I.
    direction = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], float)
    order, flips = axial_frame(direction.ravel())
    assert order[0] == 2 and flips == (False, False, False)


def test_an_oblique_volume_slices_along_its_most_superior_axis():
    angle = np.deg2rad(25)
    tilt = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    assert axial_frame(tilt.ravel()) == ((0, 1, 2), (False, False, False))


def test_round_trip_is_exact_when_the_size_equals_the_box():
    volume, mask = smooth_volume(), brain_mask()
    geometry = plan_slices(volume, mask, size=64, crop="brain", margin_mm=4)
    assert geometry.box_shape[0] == geometry.box_shape[1]
    exact = replace(geometry, size=geometry.box_shape[0])
    slices = to_slices(volume.array[None], exact)
    assert slices.shape == (exact.n_slices, 1, exact.size, exact.size) and slices.dtype == np.float32
    back = from_slices(slices, exact, fill=-1.0)[0]
    covered = inside_box(exact)
    np.testing.assert_array_equal(back[covered], volume.array[covered])
    assert np.all(back[~covered] == -1.0)


@pytest.mark.parametrize("size", [16, 96])
def test_round_trip_through_another_size_is_close_for_a_smooth_image(size):
    volume, mask = smooth_volume(), brain_mask()
    geometry = plan_slices(volume, mask, size=size, crop="brain", margin_mm=4)
    back = from_slices(to_slices(volume.array[None], geometry), geometry)[0]
    covered = inside_box(geometry, shrink=3)
    error = np.abs(back[covered] - volume.array[covered])
    assert error.max() < (0.06 if size < geometry.box_shape[0] else 0.01)


def test_brain_crop_box_surrounds_the_mask_with_the_margin_and_slices_without_brain_are_dropped():
    volume, mask = smooth_volume(), brain_mask()
    geometry = plan_slices(volume, mask, size=32, crop="brain", skip_empty=True, margin_mm=8)
    brain_slices = np.flatnonzero(mask.any(axis=(1, 2)))
    assert geometry.slice_range == (brain_slices[0], brain_slices[-1] + 1)
    assert to_slices(volume.array[None], geometry).shape[0] == len(brain_slices) < SHAPE[0]
    rows, cols = np.flatnonzero(mask.any(axis=(0, 2))), np.flatnonzero(mask.any(axis=(0, 1)))
    r0, r1, c0, c1 = geometry.crop_box
    assert r0 <= rows[0] - 8 and r1 >= rows[-1] + 1 + 8 and c0 <= cols[0] - 8 and c1 >= cols[-1] + 1 + 8
    assert r1 - r0 == c1 - c0
    masks = mask_to_slices(mask, geometry)
    assert masks.dtype == np.uint8 and set(np.unique(masks)) <= {0, 1}
    scale = (32 / (r1 - r0)) ** 2
    assert abs(masks.sum() - mask.sum() * scale) < 0.05 * mask.sum() * scale


def test_full_crop_without_skipping_keeps_every_slice_and_the_whole_plane():
    volume, mask = smooth_volume(), brain_mask()
    geometry = plan_slices(volume, mask, size=44, crop="full", skip_empty=False)
    assert geometry.slice_range == (0, SHAPE[0])
    assert geometry.crop_box == (0, 44, -2, 42)  # the 44 x 40 plane, padded to a square
    back = from_slices(to_slices(volume.array[None], geometry), geometry)
    np.testing.assert_array_equal(back[0], volume.array)


def test_box_reaching_beyond_the_image_is_padded_with_zeros():
    volume = smooth_volume()
    mask = np.zeros(SHAPE, np.uint8)
    mask[5:10, 0:6, 30:40] = 1  # brain touching two edges of the plane
    geometry = plan_slices(volume, mask, size=32, crop="brain", margin_mm=10)
    r0, r1, c0, c1 = geometry.crop_box
    assert r0 < 0 and c1 > SHAPE[2]
    exact = replace(geometry, size=r1 - r0)
    slices = to_slices(volume.array[None], exact)
    assert np.all(slices[:, :, : -r0, :] == 0) and np.all(slices[:, :, :, SHAPE[2] - c0:] == 0)
    back = from_slices(slices, exact)[0]
    covered = inside_box(exact)
    np.testing.assert_array_equal(back[covered], volume.array[covered])


def _same_anatomy_as_axial(transform) -> SliceGeometry:
    """`transform` re-stores a SimpleITK image (same physical image, other array layout)."""
    volume, mask = smooth_volume(), brain_mask()
    reference = plan_slices(volume, mask, size=40, crop="brain")
    expected = to_slices(volume.array[None], reference)

    mask_image = Volume(mask, volume.spacing, volume.origin, volume.direction).to_sitk()
    other = Volume.from_sitk(transform(volume.to_sitk()))
    geometry = plan_slices(other, Volume.from_sitk(transform(mask_image)).array, size=40, crop="brain")
    np.testing.assert_allclose(to_slices(other.array[None], geometry), expected, atol=1e-6)

    # Back onto the grid: the same voxels as un-slicing in the axial frame, then re-storing.
    axial_back = volume.with_array(from_slices(expected, reference)[0])
    np.testing.assert_allclose(from_slices(expected, geometry)[0],
                               Volume.from_sitk(transform(axial_back.to_sitk())).array, atol=1e-6)
    return geometry


def test_a_volume_with_permuted_array_axes_gives_the_same_axial_slices():
    import SimpleITK as sitk

    permuted = sitk.PermuteAxes(smooth_volume().to_sitk(), [2, 0, 1])
    direction = np.asarray(permuted.GetDirection()).reshape(3, 3)
    assert np.argmax(np.abs(direction[:, 2])) == 1  # the array's z axis now runs anterior-posterior
    geometry = _same_anatomy_as_axial(lambda image: sitk.PermuteAxes(image, [2, 0, 1]))
    assert geometry.axis_order[0] == 2  # the slices run along the array's last axis (index x)


def test_a_flipped_volume_gives_the_same_axial_slices_anterior_up():
    import SimpleITK as sitk

    geometry = _same_anatomy_as_axial(lambda image: sitk.Flip(image, [True, True, True]))
    assert geometry.flips == (True, True, True)


def test_geometry_is_json_serialisable_and_checks_its_inputs():
    volume, mask = smooth_volume(), brain_mask()
    geometry = plan_slices(volume, mask, size=32)
    assert SliceGeometry.from_dict(json.loads(json.dumps(geometry.to_dict()))) == geometry
    with pytest.raises(ValueError, match="expected"):
        to_slices(volume.array, geometry)
    with pytest.raises(ValueError, match="expected"):
        from_slices(np.zeros((1, 1, 32, 32), np.float32), geometry)
    with pytest.raises(InputError, match="empty"):
        plan_slices(volume, np.zeros(SHAPE, np.uint8), size=32)
    with pytest.raises(InputError, match="crop"):
        plan_slices(volume, mask, size=32, crop="centre")


def test_without_a_mask_every_slice_and_the_whole_plane_are_used():
    volume = smooth_volume()
    geometry = plan_slices(volume, None, size=16)
    assert geometry.slice_range == (0, SHAPE[0]) and geometry.box_shape == (44, 44)
    slices = to_slices(np.stack([volume.array, 2 * volume.array]), geometry)
    assert slices.shape == (SHAPE[0], 2, 16, 16)
    np.testing.assert_allclose(slices[:, 1], 2 * slices[:, 0], rtol=1e-5)


def test_a_permuted_and_flipped_volume_gives_the_same_axial_slices():
    import SimpleITK as sitk

    _same_anatomy_as_axial(lambda image: sitk.Flip(sitk.PermuteAxes(image, [1, 2, 0]), [True, False, True]))


def test_a_brain_that_fits_the_network_is_padded_not_resampled_so_the_round_trip_is_exact():
    rng = np.random.default_rng(4)
    array = rng.random((6, 40, 44)).astype(np.float32)
    mask = np.zeros(array.shape, bool)
    mask[:, 8:30, 10:34] = True
    geometry = plan_slices(Volume(array), mask, size=64, crop="brain", skip_empty=False)
    assert geometry.box_shape == (64, 64)
    slices = to_slices(array[None], geometry)
    np.testing.assert_array_equal(from_slices(slices, geometry)[0], array)
