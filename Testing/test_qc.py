"""QC pictures: valid PNGs, written atomically, the same picture whatever the header's axis order."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from conftest import RAS_CASE, real_case
from MRImputationLib.core.io import read_volume
from MRImputationLib.preprocessing.qc import bias_figure, contrasts_figure, registration_figure
from MRImputationLib.core.volume import Volume


def small_head(shift_mm: float = 0.0) -> Volume:
    """A small non-stripped head-like image: scalp ring, dark skull, an asymmetric brain."""
    z, y, x = np.mgrid[:40, :64, :56].astype(np.float32)
    r = np.sqrt(((z - 20) / 16) ** 2 + ((y - 32 - shift_mm) / 27) ** 2 + ((x - 28) / 23) ** 2)
    image = np.where(r < 1, 900.0, 20.0)
    image[r < 0.9] = 60.0
    image[r < 0.8] = 500.0
    image[(r < 0.5) & (x > 28) & (y < 30)] = 800.0  # something only on one side, in front
    noise = np.random.default_rng(0).normal(0, 10, image.shape)
    return Volume(np.abs(image + noise).astype(np.float32), spacing=(1.0, 1.0, 1.5), origin=(-28.0, -32.0, -30.0))


def flipped_to_ras_axes(volume: Volume) -> Volume:
    """The same physical image stored with x and y axes reversed (a RAS-like header)."""
    far = volume.index_to_physical([volume.size_xyz[0] - 1, volume.size_xyz[1] - 1, 0])
    return Volume(
        np.ascontiguousarray(volume.array[:, ::-1, ::-1]),
        spacing=volume.spacing,
        origin=(far[0], far[1], volume.origin[2]),
        direction=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0),
    )


def assert_png(path, min_height: int = 100, min_width: int = 100) -> np.ndarray:
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] >= min_height and image.shape[1] >= min_width
    assert image[..., :3].std() > 0.02  # not blank
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary files left
    return image


def test_contrasts_figure_of_a_real_case_is_a_valid_png(tmp_path):
    folder = real_case(RAS_CASE)
    volumes = {c: read_volume(next(folder.glob(f"*-{c}.nii.gz"))) for c in ("t1n", "t2w")}
    out = contrasts_figure(volumes, tmp_path / "qc" / "contrasts.png", slices=2, title="real case")
    assert out == tmp_path / "qc" / "contrasts.png"
    image = assert_png(out, min_height=300, min_width=300)
    assert image.shape[1] < image.shape[0] * 1.6  # two columns, two rows: no wide empty margins


def test_picture_is_the_same_for_lps_and_ras_stored_copies_of_one_image(tmp_path):
    head = small_head()
    flipped = flipped_to_ras_axes(head)
    np.testing.assert_allclose(flipped.index_to_physical([0, 0, 0]), head.index_to_physical([55, 63, 0]))
    a = contrasts_figure({"T1": head}, tmp_path / "a" / "lps.png", slices=2)
    b = contrasts_figure({"T1": flipped}, tmp_path / "b" / "ras.png", slices=2)
    np.testing.assert_array_equal(imread(a), imread(b))


def test_axial_pictures_put_anterior_up_and_the_patients_left_on_the_right(tmp_path):
    z, y, x = np.mgrid[:30, :40, :40]
    brain = ((z - 15) / 12.0) ** 2 + ((y - 20) / 16.0) ** 2 + ((x - 20) / 14.0) ** 2 < 1
    array = np.where(brain, 100.0, 0.0).astype(np.float32)
    array[10:20, 8:16, 24:32] = 1000.0  # LPS: small y = anterior, large x = patient's left
    for name, volume in [("lps", Volume(array)), ("ras", flipped_to_ras_axes(Volume(array)))]:
        image = imread(contrasts_figure({"T1": volume}, tmp_path / name / "c.png", slices=1))
        rows, cols = np.nonzero(image[..., :3].min(axis=2) > 0.95)
        assert rows.size > 20
        assert rows.mean() < 0.5 * image.shape[0] and cols.mean() > 0.5 * image.shape[1], name


def test_bias_figure_shows_before_after_and_field(tmp_path):
    head = small_head()
    ramp = np.linspace(0.8, 1.2, head.shape[2], dtype=np.float32)
    field = head.with_array(np.broadcast_to(ramp, head.shape).copy())
    before = head.with_array(head.array * field.array)
    image = assert_png(bias_figure(before, head, field, tmp_path / "bias.png", title="N4"))
    assert image.shape[1] > 1.2 * image.shape[0]  # two rows of three panels and a colour bar


@pytest.mark.parametrize("with_before", [True, False])
def test_registration_figure_overlays_moving_edges_on_each_own_grid(tmp_path, with_before):
    fixed = small_head()
    moved = small_head(shift_mm=5.0)
    coarse = Volume(moved.array[::2, ::2, ::2].copy(), spacing=(2.0, 2.0, 3.0), origin=moved.origin)  # another grid
    before = coarse if with_before else None
    out = registration_figure(fixed, before, fixed, tmp_path / "registration.png", title="T2 onto T1")
    image = assert_png(out)
    red = (image[..., 0] > 0.8) & (image[..., 1] < 0.5) & (image[..., 2] < 0.5)
    assert red.sum() > 50  # the edges are drawn
