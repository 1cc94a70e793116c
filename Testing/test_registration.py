"""Registration undoes a known misalignment of a real contrast onto another (multi-modal), in any
header orientation; its 4x4 convention matches ANTs'; bad inputs are refused with a reason."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import LPS_CASE, RAS_CASE, real_case
from MRImputationLib.core.errors import InputError
from MRImputationLib.core.io import read_volume
from MRImputationLib.preprocessing.registration import (
    RegistrationConfig,
    matrix_from_ants_transform,
    mean_displacement_mm,
    register,
    resample_to,
)
from MRImputationLib.core.volume import Volume


def load(case, contrast: str) -> Volume:
    folder = real_case(case)
    return read_volume(folder / f"{folder.name}-{contrast}.nii.gz", contrast=contrast)


def brain_points(volume: Volume, step: int = 3) -> np.ndarray:
    zyx = np.argwhere(volume.array[::step, ::step, ::step] > 0) * step
    return volume.index_to_physical(zyx[:, ::-1])


def random_matrix(seed: int, centre: np.ndarray, affine: bool, degrees=8.0, mm=8.0) -> np.ndarray:
    """A rotation ≤ degrees about each axis and translation ≤ mm (plus ±5 % scaling, ±0.05 shear if affine) about centre."""
    rng = np.random.default_rng(seed)
    a = np.array(sitk.Euler3DTransform((0, 0, 0), *np.deg2rad(rng.uniform(-degrees, degrees, 3))).GetMatrix()).reshape(3, 3)
    if affine:
        shear = np.eye(3)
        shear[0, 1], shear[0, 2], shear[1, 2] = rng.uniform(-0.05, 0.05, 3)
        a = a @ np.diag(1 + rng.uniform(-0.05, 0.05, 3)) @ shear
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = a, centre + rng.uniform(-mm, mm, 3) - a @ centre
    return m


def misalign(volume: Volume, matrix: np.ndarray, grid: Volume | None = None) -> Volume:
    """volume moved by `matrix` with plain sitk.Resample: out(p) = volume(matrix·p), on `grid`'s grid."""
    grid = grid or volume
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(matrix[:3, :3].ravel().tolist())
    transform.SetTranslation(matrix[:3, 3].tolist())
    out = sitk.Resample(sitk.Cast(volume.to_sitk(), sitk.sitkFloat32), grid.to_sitk(), transform, sitk.sitkLinear, 0.0)
    return Volume.from_sitk(out, contrast=volume.contrast, source=volume.source)


def check_undone(fixed: Volume, moving: Volume, kind: str, seed: int, grid: Volume | None = None) -> float:
    centre = brain_points(fixed).mean(0)
    moved_by = random_matrix(seed, centre, affine=kind == "affine")
    misaligned = misalign(moving, moved_by, grid)
    truth = np.linalg.inv(moved_by)  # fixed ≈ moving, and misaligned(p) = moving(moved_by·p)
    result = register(misaligned, fixed, RegistrationConfig(kind=kind))
    points = brain_points(fixed)
    assert mean_displacement_mm(np.eye(4), truth, points) > 4.0  # there was something to undo
    residual = mean_displacement_mm(result.fixed_to_moving, truth, points)
    assert result.volume.same_grid(fixed) and result.volume.contrast == moving.contrast
    assert result.metric_value is not None and result.metric_value < 0  # Mattes MI is reported negated
    return residual


def test_rigid_t2_onto_t1_full_resolution_real_case():
    fixed, moving = load(LPS_CASE, "t1n"), load(LPS_CASE, "t2w")
    assert check_undone(fixed, moving, "rigid", seed=0) <= 1.0


def test_affine_with_scaling_and_shear_is_undone():
    fixed, moving = load(LPS_CASE, "t1n"), load(LPS_CASE, "t2w")
    assert check_undone(fixed, moving, "affine", seed=1) <= 1.0


def test_ras_header_case_and_a_different_moving_grid():
    """The RAS case (its T1n is ~1.5 mm off its other contrasts in the data itself, so T2 goes onto FLAIR),
    with the moving image re-sampled onto an LPS 1.5 mm grid: only physical space matters."""
    fixed, moving = load(RAS_CASE, "t2f"), load(RAS_CASE, "t2w")
    assert fixed.direction_matrix[0, 0] < 0  # RAS on disk: ITK reports x flipped
    corners = fixed.index_to_physical(np.array(np.meshgrid([0, 239], [0, 239], [0, 154])).reshape(3, -1).T)
    size_xyz = np.ceil(np.ptp(corners, axis=0) / 1.5).astype(int) + 1
    lps_grid = Volume(np.zeros(size_xyz[::-1], np.float32), spacing=(1.5, 1.5, 1.5), origin=tuple(corners.min(0)))
    assert check_undone(fixed, moving, "rigid", seed=2, grid=lps_grid) <= 1.0


def test_fixed_to_moving_matches_ants_apply_transforms():
    ants = pytest.importorskip("ants")
    fixed4 = Volume.from_sitk(sitk.BinShrink(load(RAS_CASE, "t1n").to_sitk(), [4, 4, 4]))  # RAS direction
    moving = load(RAS_CASE, "t2w")
    moved = misalign(moving, random_matrix(3, brain_points(moving).mean(0), affine=True),
                     Volume.from_sitk(sitk.BinShrink(moving.to_sitk(), [3, 3, 3])))
    ants_result = ants.registration(fixed4.to_ants(), moved.to_ants(), type_of_transform="QuickRigid")
    matrix = matrix_from_ants_transform(ants_result["fwdtransforms"][0])
    ours = resample_to(moved, fixed4, matrix).array
    theirs = Volume.from_ants(ants.apply_transforms(fixed4.to_ants(), moved.to_ants(), ants_result["fwdtransforms"])).array
    inside = (ours > 0) & (theirs > 0)
    assert inside.mean() > 0.05
    assert np.abs(ours - theirs)[inside].mean() <= 1e-3 * np.abs(theirs[inside]).mean()
    # and our own matrix written as an ANTs transform gives the same resampling
    transform = ants.create_ants_transform(dimension=3, matrix=matrix[:3, :3], translation=matrix[:3, 3])
    again = Volume.from_ants(ants.apply_transforms(fixed4.to_ants(), moved.to_ants(), [_write(ants, transform)])).array
    assert np.allclose(again, theirs, atol=1e-3 * np.abs(theirs).max())
    assert np.allclose(matrix_from_ants_transform(transform), matrix)


def _write(ants, transform) -> str:
    import tempfile

    path = tempfile.mkdtemp() + "/t.mat"
    ants.write_transform(transform, path)
    return path


def test_resample_to_identity_and_nearest_keep_values():
    rng = np.random.default_rng(0)
    labels = Volume(rng.integers(0, 4, (10, 12, 14)).astype(np.uint8), spacing=(1.0, 2.0, 1.5), contrast="labels")
    same = resample_to(labels, labels, interpolation="nearest")
    assert same.array.dtype == np.uint8 and np.array_equal(same.array, labels.array)
    shift = np.eye(4)
    shift[0, 3] = 1.0  # one voxel along x
    shifted = resample_to(labels, labels, shift, interpolation="nearest").array
    assert np.array_equal(shifted[:, :, :-1], labels.array[:, :, 1:]) and not shifted[:, :, -1].any()
    with pytest.raises(ValueError):
        resample_to(labels, labels, interpolation="cubic")


def test_mean_displacement_of_a_translation_is_its_length():
    shift = np.eye(4)
    shift[:3, 3] = [3.0, 4.0, 0.0]
    points = np.random.default_rng(1).normal(size=(50, 3)) * 40
    assert mean_displacement_mm(shift, np.eye(4), points) == pytest.approx(5.0)


def test_images_that_do_not_overlap_are_refused_naming_the_file():
    rng = np.random.default_rng(0)
    fixed = Volume(rng.random((20, 20, 20)).astype(np.float32), source="fixed.nii.gz")
    far = Volume(fixed.array.copy(), origin=(500.0, 0.0, 0.0), source="/data/far_T2.nii.gz", contrast="T2")
    with pytest.raises(InputError, match="far_T2.nii.gz.*does not overlap"):
        register(far, fixed)


def test_an_empty_reference_is_refused():
    blob = np.zeros((24, 24, 24), np.float32)
    blob[6:18, 6:18, 6:18] = 1.0
    with pytest.raises(InputError, match="no foreground"):
        register(Volume(blob), Volume(np.zeros_like(blob), source="empty_T1.nii.gz"))


def test_config_rejects_unknown_kind_and_mismatched_levels():
    with pytest.raises(ValueError, match="kind"):
        RegistrationConfig(kind="syn")
    with pytest.raises(ValueError, match="one entry per level"):
        RegistrationConfig(levels_mm=(4.0, 2.0))
