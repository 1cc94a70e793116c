"""Procedural head anatomy for the phantom: a label map, tissue parameters and smooth noise.

Everything works on the (z, y, x) array grid of a `Volume` whose physical centre is the origin
(LPS millimetres: +x towards the patient's left, +y posterior, +z superior). Shapes come from
ellipsoids in coordinates normalised by the head's semi-axes, perturbed by smooth random fields,
so sizes scale with the field of view and each seed gives another head.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np

try:  # multi-threaded BLAS only slows these small products down, badly so on a busy machine
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - optional
    threadpool_limits = None

# Label values of the map that `make_labels` returns.
LABELS: dict[str, int] = {
    "background": 0,
    "scalp": 1,
    "skull": 2,
    "csf": 3,
    "grey_matter": 4,
    "white_matter": 5,
    "ventricles": 6,
    "necrosis": 7,
    "enhancing": 8,
    "edema": 9,
}
BRAIN_LABELS = (3, 4, 5, 6, 7, 8, 9)
LESION_LABELS = (7, 8, 9)

# Per label: proton density (relative), T1 (ms), T2 (ms), gadolinium concentration (mM) after
# injection. Values near 1.5 T literature (e.g. Wansapura 1999, Bojorquez 2017); the necrotic
# core, enhancing rim and edema follow typical glioblastoma appearances.
TISSUES = np.array(
    [
        # PD    T1      T2     Gd
        [0.00, 1000.0, 100.0, 0.0],  # background (no signal)
        [0.90, 350.0, 70.0, 0.0],  # scalp: fat and skin
        [0.10, 500.0, 30.0, 0.0],  # skull: cortical bone, little mobile water
        [1.00, 4000.0, 2000.0, 0.0],  # CSF
        [0.80, 1300.0, 100.0, 0.0],  # grey matter
        [0.70, 800.0, 80.0, 0.0],  # white matter
        [1.00, 4000.0, 2000.0, 0.0],  # ventricles (CSF)
        [0.90, 2000.0, 250.0, 0.0],  # necrotic core: fluid-like, no uptake
        [0.85, 1500.0, 150.0, 0.5],  # enhancing rim: blood-brain barrier leak
        [0.85, 1100.0, 140.0, 0.0],  # edema: extra water, bright on T2 and FLAIR
    ],
    dtype=np.float32,
)
GADOLINIUM_R1 = 4.5e-3  # relaxivity, 1/(mM ms) (gadoterate at 1.5 T: ~4.5 /mM/s)


def physical_axes(shape_xyz, spacing) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-centre coordinates (mm) along x, y and z of a grid centred on the physical origin."""
    return tuple(
        ((np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * np.float32(s)) for n, s in zip(shape_xyz, spacing)
    )


def smooth_noise(rng: np.random.Generator, axes, sigma_mm: float) -> np.ndarray:
    """A smooth Gaussian random field on the grid (z, y, x), mean 0, variance 1 at every voxel.

    Random weights on a coarse lattice (spacing `sigma_mm`) are spread with Gaussian kernels of
    width `sigma_mm`; the kernels are separable, so the field costs three small matrix products
    instead of a full-resolution filter.
    """
    mats = []
    for a in axes:
        sigma = float(max(sigma_mm, 1e-3))
        centres = np.arange(float(a[0]) - 2 * sigma, float(a[-1]) + 2 * sigma + 1e-6, sigma, dtype=np.float32)
        w = np.exp(-0.5 * ((a[:, None] - centres[None, :]) / sigma) ** 2).astype(np.float32)
        w[w < 1e-4] = 0  # truncate the kernel at ~4 sigma (and keep float32 denormals, which are slow, out)
        mats.append(w / np.sqrt((w**2).sum(axis=1, keepdims=True)))
    wx, wy, wz = mats
    coefficients = rng.standard_normal((wz.shape[1], wy.shape[1], wx.shape[1]), dtype=np.float32)
    nz, ny, nx = wz.shape[0], wy.shape[0], wx.shape[0]
    with threadpool_limits(1, "blas") if threadpool_limits else contextlib.nullcontext():
        field = coefficients @ wx.T  # (cz, cy, nx)
        field = wy @ field  # (cz, ny, nx)
        return (wz @ field.reshape(field.shape[0], ny * nx)).reshape(nz, ny, nx)


def head_semi_axes(shape_xyz, spacing) -> np.ndarray:
    """Semi-axes (mm) of an average head for this field of view: 240x240x155 mm gives an adult head."""
    fov = np.asarray(shape_xyz, float) * np.asarray(spacing, float)
    ax, ay = 0.33 * fov[0], 0.40 * fov[1]
    return np.array([ax, ay, min(0.42 * fov[2], 0.85 * (ax + ay) / 2)])


def _ellipsoid(u, v, w, centre, semi) -> np.ndarray:
    """Squared normalised distance to an ellipsoid's centre (< 1 inside)."""
    return ((u - centre[0]) / semi[0]) ** 2 + ((v - centre[1]) / semi[1]) ** 2 + ((w - centre[2]) / semi[2]) ** 2


class _Grid(NamedTuple):
    """The head's grid: coordinates normalised by its semi-axes (u along x, v along y, w along z, broadcastable
    to z, y, x), the physical axes, the semi-axes and their mean (mm), the spacing (mm) and a voxel in head sizes."""

    u: np.ndarray
    v: np.ndarray
    w: np.ndarray
    axes: tuple
    semi: list
    size: float
    spacing: list
    voxel: float


def make_labels(rng: np.random.Generator, shape_xyz, spacing, lesion: bool = True) -> np.ndarray:
    """A random head label map (uint8, array order z, y, x) with the values of `LABELS`."""
    grid = _head_grid(rng, shape_xyz, spacing)
    u, v, w = grid.u, grid.v, grid.w
    # Head: an egg-shaped ellipsoid (wider at the back), boundaries deformed by a smooth field.
    shape_field = smooth_noise(rng, grid.axes, 0.35 * grid.size)
    r = np.sqrt(u**2 * (1 - 0.12 * v) ** 2 + v**2 + w**2, dtype=np.float32)
    r *= 1 + 0.035 * shape_field
    labels, brain = _head_layers(rng, grid, r)
    in_brain = r < brain
    gyral, slow = _add_cortex(labels, rng, grid, r, brain, in_brain, shape_field)
    _add_deep_grey_and_ventricles(labels, rng, grid, in_brain)
    if lesion:
        _add_lesion(labels, rng, grid, in_brain, gyral, slow)
    return labels


def _head_grid(rng: np.random.Generator, shape_xyz, spacing) -> _Grid:
    """A random head's size and position on the grid (its semi-axes scaled and its centre shifted a little)."""
    x, y, z = physical_axes(shape_xyz, spacing)
    spacing = [float(s) for s in spacing]
    # Python floats throughout: a NumPy float64 scalar would promote the float32 grids to float64.
    semi = (head_semi_axes(shape_xyz, spacing) * rng.uniform(0.92, 1.05, 3)).tolist()
    size = sum(semi) / 3
    shift = (rng.uniform(-0.03, 0.03, 3) * semi).tolist()
    u = ((x - shift[0]) / semi[0])[None, None, :]
    v = ((y - shift[1]) / semi[1])[None, :, None]
    w = ((z - shift[2]) / semi[2])[:, None, None]
    return _Grid(u, v, w, (x, y, z), semi, size, spacing, max(spacing) / size)


def _head_layers(rng: np.random.Generator, grid: _Grid, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scalp, skull and CSF shells of varying thickness; returns the labels and the brain's radius in `r` units."""
    thickness = smooth_noise(rng, grid.axes, 0.2 * grid.size)
    scalp, skull, csf = rng.uniform(0.055, 0.075), rng.uniform(0.06, 0.085), rng.uniform(0.025, 0.04)
    # Keep each layer at least about one voxel thick on coarse grids.
    voxel = grid.voxel
    scalp, skull, csf = max(scalp, 1.1 * voxel), max(skull, 1.2 * voxel), max(csf, 0.9 * voxel)
    skull_out = 1 - scalp
    skull_in = skull_out - skull * (1 + 0.2 * thickness)
    brain = skull_in - csf
    labels = np.zeros(r.shape, np.uint8)
    labels[r < 1] = LABELS["scalp"]
    labels[r < skull_out] = LABELS["skull"]
    labels[r < skull_in] = LABELS["csf"]
    return labels, brain


def _add_cortex(labels: np.ndarray, rng: np.random.Generator, grid: _Grid, r: np.ndarray, brain: np.ndarray,
                in_brain: np.ndarray, shape_field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """White matter under a grey ribbon with sulci and the fissure (in place); returns the folding fields.

    Cortex: a grey ribbon under the brain surface, the medial surface of each hemisphere (the
    interhemispheric fissure reaches down to the corpus callosum) and along sulci. Sulci are thin
    CSF sheets on the zero set of a smooth "gyral" field G; |G| sigma / 1.22 approximates the
    distance to them. Depths are in head-size units.
    """
    u, v, w, size, spacing, voxel = grid.u, grid.v, grid.w, grid.size, grid.spacing, grid.voxel
    callosal = (v / 0.55) ** 2 + ((w + 0.12) / 0.44) ** 2 < 1  # no fissure below this arch
    fissure = max(0.006, 0.55 * spacing[0] / size)
    midline = np.abs(u + 0.02 * shape_field) * np.float32(grid.semi[0] / size) - np.float32(fissure)
    midline[np.broadcast_to(callosal, midline.shape)] = np.inf
    depth = np.minimum(brain - r, midline)
    fold_scale = max(0.05 * size, min(spacing))
    gyral = smooth_noise(rng, grid.axes, fold_scale)
    slow = smooth_noise(rng, grid.axes, 3 * fold_scale)
    distance = np.abs(gyral) * np.float32(fold_scale / 1.22 / size)
    sulcal_depth = rng.uniform(0.13, 0.17) * (1 + 0.3 * slow)
    cortex = max(0.035, 1.2 * voxel)
    sulcus = max(0.008, 0.5 * voxel)
    labels[in_brain] = LABELS["white_matter"]
    ribbon = (depth < cortex) | ((distance < sulcus + cortex) & (depth < sulcal_depth + cortex))
    labels[in_brain & ribbon] = LABELS["grey_matter"]
    labels[in_brain & (((distance < sulcus) & (depth < sulcal_depth)) | (midline < 0))] = LABELS["csf"]
    return gyral, slow


def _add_deep_grey_and_ventricles(labels: np.ndarray, rng: np.random.Generator, grid: _Grid,
                                  in_brain: np.ndarray) -> None:
    """Deep grey nuclei, then the ventricles (lateral pair curving like bananas, thin third), in place."""
    u, v, w = grid.u, grid.v, grid.w
    for side in (-1.0, 1.0):
        labels[_ellipsoid(u, v, w, (side * 0.10, 0.08, -0.06), (0.08, 0.12, 0.10)) < 1] = LABELS["grey_matter"]
        labels[_ellipsoid(u, v, w, (side * 0.24, -0.06, -0.03), (0.06, 0.15, 0.11)) < 1] = LABELS["grey_matter"]
    scale = rng.uniform(0.7, 1.4)
    spread = 0.075 * scale + rng.uniform(0.01, 0.03)  # keeps a septum between them
    for side in (-1.0, 1.0):
        uu = u - side * (spread + 0.12 * (v + 0.2) ** 2)
        ww = w - 0.12 + 0.5 * (v - 0.05) ** 2
        inside = (uu / (0.075 * scale)) ** 2 + ((v + 0.02) / 0.38) ** 2 + (ww / (0.11 * scale)) ** 2 < 1
        labels[inside & in_brain] = LABELS["ventricles"]
    third_width = max(0.015 * scale, 0.6 * grid.spacing[0] / grid.semi[0])
    third = _ellipsoid(u, v, w, (0.0, 0.04, -0.06), (third_width, 0.12, 0.08))
    labels[third < 1] = LABELS["ventricles"]


def _add_lesion(labels: np.ndarray, rng: np.random.Generator, grid: _Grid, in_brain: np.ndarray,
                gyral: np.ndarray, slow: np.ndarray) -> None:
    """A tumour in one hemisphere (edema around an enhancing rim around a necrotic core), in place."""
    side = float(rng.choice((-1.0, 1.0)))
    centre = (side * rng.uniform(0.2, 0.36), rng.uniform(-0.35, 0.35), rng.uniform(-0.05, 0.35))
    radius = (rng.uniform(0.10, 0.17) * rng.uniform(0.85, 1.15, 3)).tolist()
    d = np.sqrt(_ellipsoid(grid.u, grid.v, grid.w, centre, radius)) * (1 + 0.1 * gyral + 0.1 * slow)
    parenchyma = in_brain & ((labels == LABELS["white_matter"]) | (labels == LABELS["grey_matter"]))
    labels[parenchyma & (d < rng.uniform(1.4, 1.9))] = LABELS["edema"]
    core = rng.uniform(0.35, 0.55)
    labels[in_brain & (d < 0.8)] = LABELS["enhancing"]
    labels[in_brain & (d < core)] = LABELS["necrosis"]
