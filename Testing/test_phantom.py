"""The synthetic phantom: reproducible heads, physical contrasts, and truth that matches what it applied."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from MRImputationLib.core.errors import InputError
from MRImputationLib.core.io import read_volume
from MRImputationLib.data.phantom import PhantomConfig, make_subject, write_phantom
from MRImputationLib.data.phantom_anatomy import LABELS, make_labels

SMALL = (48, 48, 36)


def _mean(subject, contrast, *names):
    """Mean truth intensity of these tissues, away from their borders (the truth has partial volume)."""
    mask = np.isin(subject.labels.array, [LABELS[n] for n in names])
    interior = ndimage.binary_erosion(mask)
    return float(subject.truth[contrast].array[interior if interior.sum() > 20 else mask].mean())


def _correlation(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_same_seed_gives_the_same_subject_and_another_seed_another():
    config = PhantomConfig(shape=SMALL, misalignment="rigid")
    first, again, other = make_subject(config, 7), make_subject(config, 7), make_subject(config, 8)
    for contrast in config.contrasts:
        np.testing.assert_array_equal(first.observed[contrast].array, again.observed[contrast].array)
        np.testing.assert_array_equal(first.truth_to_observed[contrast], again.truth_to_observed[contrast])
        assert not np.array_equal(first.truth[contrast].array, other.truth[contrast].array)
    np.testing.assert_array_equal(first.labels.array, again.labels.array)
    assert (first.labels.array != other.labels.array).mean() > 0.01


@pytest.mark.parametrize("seed", [0, 1])
def test_contrasts_order_tissues_as_the_signal_equations_predict(seed):
    config = PhantomConfig(shape=(64, 64, 48), contrasts=("t1", "T2", "pd", "FLAIR", "T1c"), noise=0)
    s = make_subject(config, seed)
    assert list(s.truth) == ["T1", "T2", "PD", "FLAIR", "T1c"]
    wm, gm, csf = "white_matter", "grey_matter", "csf"
    assert _mean(s, "T1", wm) > _mean(s, "T1", gm) > _mean(s, "T1", csf)
    assert _mean(s, "T1", "scalp") > _mean(s, "T1", wm)  # fat is bright on T1
    assert _mean(s, "T2", csf) > _mean(s, "T2", gm) > _mean(s, "T2", wm)
    assert _mean(s, "PD", csf) > 0.9 * _mean(s, "PD", gm) and _mean(s, "PD", gm) > _mean(s, "PD", wm)
    assert _mean(s, "FLAIR", csf, "ventricles") < 0.5 * _mean(s, "FLAIR", wm)  # fluid suppressed
    lesion = _mean(s, "FLAIR", "necrosis", "enhancing", "edema")
    assert lesion > _mean(s, "FLAIR", gm) and lesion > _mean(s, "FLAIR", wm)
    # Gadolinium shortens T1 only where it leaks: the rim lights up on T1c, healthy tissue does not change.
    assert _mean(s, "T1c", "enhancing") > 1.5 * _mean(s, "T1", "enhancing")
    assert _mean(s, "T1c", "enhancing") > 1.5 * _mean(s, "T1c", wm)
    assert _mean(s, "T1c", wm) == pytest.approx(_mean(s, "T1", wm))
    brain = s.brain_mask.array.astype(bool)
    assert np.array_equal(brain, s.labels.array >= LABELS["csf"])


def test_lesion_can_be_left_out():
    s = make_subject(PhantomConfig(shape=SMALL, lesion=False), 3)
    assert not np.isin(s.labels.array, [LABELS["necrosis"], LABELS["enhancing"], LABELS["edema"]]).any()


def test_head_size_follows_the_field_of_view():
    # 240 x 240 x 155 mm (here at 2 mm) must look like an adult head: about 16 cm wide, 19 cm long.
    labels = make_labels(np.random.default_rng(0), (120, 120, 78), (2.0, 2.0, 2.0))
    z, y, x = np.nonzero(labels)
    width, length, height = (np.ptp(a) * 2.0 for a in (x, y, z))
    assert 135 < width < 185 and 160 < length < 215 and 100 < height < 150
    assert width < length  # narrower left-right than front-back
    brain = np.isin(labels, [LABELS["grey_matter"], LABELS["white_matter"]]).sum() * 8e-3  # ml
    assert 700 < brain < 1600


def test_observed_over_truth_is_the_stored_bias_field_when_there_is_no_noise():
    config = PhantomConfig(shape=SMALL, noise=0.0, bias_strength=0.3)
    s = make_subject(config, 4)
    for contrast in config.contrasts:
        truth, observed, bias = (v[contrast].array for v in (s.truth, s.observed, s.bias_fields))
        head = s.labels.array > 0
        signal = head & (truth > 0.05 * truth.max())
        assert _correlation(observed[signal] / truth[signal], bias[signal]) > 0.999
        assert bias[head].mean() == pytest.approx(1.0, abs=1e-3)
        assert 1.1 < bias[head].max() / bias[head].min() < 1.35**2
        assert s.bias_fields[contrast].same_grid(s.observed[contrast])


def test_noise_is_rician_with_sigma_a_fraction_of_white_matter():
    config = PhantomConfig(shape=SMALL, contrasts=("T2",), noise=0.05, bias_strength=0.0)
    s = make_subject(config, 5)
    outside = ndimage.binary_dilation(s.labels.array > 0, iterations=3) == 0
    sigma = 0.05 * s.truth["T2"].array[s.labels.array == LABELS["white_matter"]].mean()
    background = s.observed["T2"].array[outside]
    assert background.min() >= 0
    assert background.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.05)  # Rayleigh where no signal


def test_rigid_misalignment_moves_all_but_the_reference_by_rigid_transforms():
    config = PhantomConfig(shape=SMALL, contrasts=("PD", "T1", "T2", "FLAIR"), misalignment="rigid")
    s = make_subject(config, 6)
    np.testing.assert_array_equal(s.truth_to_observed["PD"], np.eye(4))
    for contrast in ("T1", "T2", "FLAIR"):
        m = s.truth_to_observed[contrast]
        rotation = m[:3, :3]
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
        np.testing.assert_array_equal(m[3], [0, 0, 0, 1])
        angle = np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))
        assert 0 < angle <= 5.0 * np.sqrt(3) + 1e-6
        centre = np.zeros(3)  # the image centre is the physical origin
        assert np.abs(m[:3, :3] @ centre + m[:3, 3] - centre).max() <= 4.0 + 1e-6
    affine = make_subject(PhantomConfig(shape=SMALL, misalignment="affine"), 6).truth_to_observed["T2"][:3, :3]
    assert not np.allclose(affine @ affine.T, np.eye(3), atol=1e-3) and 0.85 < np.linalg.det(affine) < 1.15


def _sample_observed_at_moved_truth_points(subject, contrast, matrix):
    """observed(M p) for every truth voxel p, computed by hand (no SimpleITK transform conventions)."""
    volume = subject.observed[contrast]
    nz, ny, nx = volume.shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    points = volume.index_to_physical(np.stack([i, j, k], axis=-1).reshape(-1, 3))
    moved = points @ matrix[:3, :3].T + matrix[:3, 3]
    index = (moved - np.asarray(volume.origin)) / np.asarray(volume.spacing)  # identity direction
    values = ndimage.map_coordinates(volume.array, index[:, ::-1].T, order=1, cval=0.0)
    return values.reshape(volume.shape)


def test_truth_to_observed_carries_truth_anatomy_onto_the_observed_image():
    config = PhantomConfig(
        shape=SMALL, contrasts=("T1", "T2"), misalignment="rigid", noise=0.0, bias_strength=0.0,
        max_rotation_deg=10.0, max_translation_mm=5.0,
    )
    s = make_subject(config, 11)
    truth, observed, m = s.truth["T2"].array, s.observed["T2"].array, s.truth_to_observed["T2"]
    head = s.labels.array > 0
    right = _sample_observed_at_moved_truth_points(s, "T2", m)
    wrong = _sample_observed_at_moved_truth_points(s, "T2", np.linalg.inv(m))
    assert _correlation(right[head], truth[head]) > 0.9
    assert _correlation(right[head], truth[head]) > _correlation(wrong[head], truth[head]) + 0.3
    # A landmark: the intensity-weighted centroid moves exactly as the matrix says (rigid: no volume change).
    grid = s.truth["T2"]

    def centroid(array):
        k, j, i = np.nonzero(array)
        weights = array[k, j, i]
        return (grid.index_to_physical(np.stack([i, j, k], axis=1)) * weights[:, None]).sum(0) / weights.sum()

    expected = m[:3, :3] @ centroid(truth) + m[:3, 3]
    assert np.linalg.norm(centroid(observed) - expected) < 0.5
    assert np.linalg.norm(centroid(observed) - centroid(truth)) > 1.0  # it really moved


def test_config_canonicalises_contrast_names_and_refuses_bad_values():
    assert PhantomConfig(contrasts=("t1", "flair", "T1ce", "pd")).contrasts == ("T1", "FLAIR", "T1c", "PD")
    with pytest.raises(InputError, match="DWI"):
        PhantomConfig(contrasts=("T1", "DWI"))
    with pytest.raises(InputError, match="twice"):
        PhantomConfig(contrasts=("T1", "t1"))
    with pytest.raises(InputError, match="misalignment"):
        PhantomConfig(misalignment="elastic")


def test_write_phantom_writes_observed_images_and_truth_readable_back(tmp_path):
    config = PhantomConfig(shape=(32, 32, 24), contrasts=("T1", "T1c", "FLAIR"), misalignment="rigid")
    progress = []
    folders = write_phantom(tmp_path / "out", 2, config, seed=3, on_progress=lambda f, m: progress.append((f, m)))
    assert [f.name for f in folders] == ["sub-000", "sub-001"]
    assert [f for f, _ in progress] == [0.5, 1.0]
    for folder in folders:
        name = folder.name
        truth = folder / "truth"
        expected = {f"{name}_{c}.nii.gz" for c in config.contrasts} | {f"{name}_seg.nii.gz", "truth"}
        assert {p.name for p in folder.iterdir()} == expected
        expected_truth = (
            {f"{name}_{c}.nii.gz" for c in config.contrasts}
            | {f"{name}_bias_{c}.nii.gz" for c in config.contrasts}
            | {f"{name}_labels.nii.gz", f"{name}_brainmask.nii.gz", "transforms.json"}
        )
        assert {p.name for p in truth.iterdir()} == expected_truth
        for path in sorted(folder.glob("*.nii.gz")) + sorted(truth.glob("*.nii.gz")):
            volume = read_volume(path)
            assert volume.shape == (24, 32, 32) and volume.spacing == (1.0, 1.0, 1.0)
        record = json.loads((truth / "transforms.json").read_text())
        assert record["convention"] == "truth_to_observed, LPS mm, 4x4" and record["reference"] == "T1"
        assert record["seed"] == 3 + int(name[-3:]) and record["config"]["contrasts"] == ["T1", "T1c", "FLAIR"]
        assert np.allclose(record["transforms"]["T1"], np.eye(4))
        assert not np.allclose(record["transforms"]["FLAIR"], np.eye(4))
    same = make_subject(config, 3, name="sub-000")
    np.testing.assert_allclose(read_volume(folders[0] / "sub-000_T1c.nii.gz").array, same.observed["T1c"].array)


def test_a_subject_with_a_lesion_ships_its_tumour_mask_as_a_seg_file_and_one_without_none(tmp_path):
    with_lesion = write_phantom(tmp_path / "lesion", 1, PhantomConfig(shape=(32, 32, 24)), seed=4)[0]
    seg = read_volume(with_lesion / "sub-000_seg.nii.gz")
    labels = read_volume(with_lesion / "truth" / "sub-000_labels.nii.gz")
    lesion = np.isin(labels.array, [LABELS["necrosis"], LABELS["enhancing"], LABELS["edema"]])
    assert seg.same_grid(read_volume(with_lesion / "sub-000_T1.nii.gz")) and set(np.unique(seg.array)) == {0, 1}
    assert lesion.any() and np.array_equal(seg.array > 0, lesion)
    without = write_phantom(tmp_path / "plain", 1, PhantomConfig(shape=(32, 32, 24), lesion=False), seed=4)[0]
    assert not list(without.glob("*_seg.nii.gz"))
