"""Volumes keep their physical placement through files, and bad files are refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import LPS_CASE, RAS_CASE, real_case
from MRImputationLib.core.errors import InputError
from MRImputationLib.core.io import read_volume, write_volume
from MRImputationLib.core.volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _corners(volume: Volume) -> np.ndarray:
    x, y, z = (s - 1 for s in volume.size_xyz)
    return np.array([[0, 0, 0], [x, 0, 0], [0, y, 0], [0, 0, z], [x, y, z]], float)


@pytest.mark.parametrize("case, stem", [(LPS_CASE, "t1n"), (RAS_CASE, "t1n")])
def test_physical_position_agrees_with_nibabel_for_lps_and_ras_headers(case, stem):
    import nibabel

    path = next(real_case(case).glob(f"*-{stem}.nii.gz"))
    volume = read_volume(path)
    affine = nibabel.load(str(path)).affine  # voxel (i, j, k) -> RAS
    corners = _corners(volume)
    ras_from_nibabel = corners @ affine[:3, :3].T + affine[:3, 3]
    ras_from_volume = volume.index_to_physical(corners) @ LPS_TO_RAS.T
    np.testing.assert_allclose(ras_from_volume, ras_from_nibabel, atol=1e-3)


@pytest.mark.parametrize("case", [LPS_CASE, RAS_CASE])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_round_trip_keeps_voxels_and_physical_placement(tmp_path, case, suffix):
    source = read_volume(next(real_case(case).glob("*-t2w.nii.gz")))
    written = write_volume(source, tmp_path / f"copy{suffix}")
    again = read_volume(written)
    np.testing.assert_array_equal(again.array, source.array)
    np.testing.assert_allclose(again.index_to_physical(_corners(again)), source.index_to_physical(_corners(source)),
                               atol=1e-4)


def test_oblique_geometry_survives_a_round_trip(tmp_path):
    angle = np.deg2rad(20)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    volume = Volume(np.random.default_rng(0).random((5, 6, 7)).astype(np.float32), spacing=(0.9, 1.2, 3.0),
                    origin=(10, -20, 30), direction=tuple(direction.ravel()), contrast="T1")
    again = read_volume(write_volume(volume, tmp_path / "oblique.nrrd"))
    assert again.same_grid(volume)


def _write(image: sitk.Image, path) -> str:
    sitk.WriteImage(image, str(path))
    return str(path)


def test_four_d_file_is_refused_naming_the_file(tmp_path):
    array = np.random.default_rng(0).random((3, 8, 8, 8)).astype(np.float32)
    path = _write(sitk.GetImageFromArray(array, isVector=False), tmp_path / "dwi.nii.gz")
    with pytest.raises(InputError, match=r"dwi\.nii\.gz.*4-D.*3 volumes"):
        read_volume(path)


# ITK's NIfTI reader turns NaN into 0 (then the constant-image check refuses it); NRRD keeps NaN.
def test_all_nan_file_is_refused(tmp_path):
    image = sitk.GetImageFromArray(np.full((4, 4, 4), np.nan, np.float32))
    with pytest.raises(InputError, match="nan.nrrd: contains no finite values"):
        read_volume(_write(image, tmp_path / "nan.nrrd"))


def test_some_infinite_voxels_are_refused_with_a_count(tmp_path):
    array = np.ones((4, 4, 4), np.float32)
    array[0, 0, :2] = np.inf
    array[1, 1, 1] = 2
    with pytest.raises(InputError, match="2 NaN or infinite voxels"):
        read_volume(_write(sitk.GetImageFromArray(array), tmp_path / "inf.nrrd"))


def test_constant_image_is_refused_as_holding_no_anatomy(tmp_path):
    with pytest.raises(InputError, match="every voxel has the same value"):
        read_volume(_write(sitk.Image([6, 6, 6], sitk.sitkInt16), tmp_path / "zeros.nii.gz"))


@pytest.mark.parametrize("content", [b"", b"this is not an image"])
def test_unreadable_or_non_image_file_is_refused(tmp_path, content):
    path = tmp_path / "scan.nii.gz"
    path.write_bytes(content)
    with pytest.raises(InputError, match="scan.nii.gz: could not be read as an image"):
        read_volume(path)


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_volume(tmp_path / "absent.nii.gz")
    with pytest.raises(InputError, match="is a folder"):
        read_volume(tmp_path)


def test_failed_write_leaves_no_partial_file(tmp_path):
    volume = Volume(np.zeros((3, 3, 3), np.float32))
    volume.array = np.zeros((3, 3, 3), dtype=object)  # SimpleITK cannot write this
    with pytest.raises(Exception):
        write_volume(volume, tmp_path / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []
