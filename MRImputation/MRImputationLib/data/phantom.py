"""Synthetic heads with known truth: contrasts from tissue parameters through MR signal equations.

A random head (scalp, skull, CSF, grey and white matter, ventricles, optional tumour with necrotic
core, enhancing rim and edema; see `phantom_anatomy`) gets per-tissue proton density, T1 and T2
with per-subject variation and smooth texture. Each contrast is computed with its sequence:

* spin echo (T1, T2, PD, T1c): S = PD (1 - exp(-TR/T1)) exp(-TE/T2)
* inversion recovery (FLAIR):  S = PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)
* T1c: T1 shortened by gadolinium where it leaks, 1/T1' = 1/T1 + r1 C

and blurred by a Gaussian point spread (0.5 voxel) for partial volume, then scaled by 1000.

The "observed" images then get, per contrast, an optional random misalignment (the first contrast
is the reference and stays put), a smooth multiplicative bias field and Rician noise. The truth
(aligned, bias- and noise-free images, labels, brain mask, the applied bias fields and transforms)
is kept so registration, N4 and imputation errors can be measured.

Transform convention: `truth_to_observed[c]` is a 4x4 matrix in physical LPS millimetres; the
anatomy at truth point p appears at `truth_to_observed[c] @ [p, 1]` in the observed image.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage

from ..core.atomic import atomic_directory, write_text
from ..core.outputs import check_output_folder
from ..core.contrasts import canonical_contrast
from ..core.errors import InputError
from ..core.io import write_volume
from ..core.volume import Volume
from .phantom_anatomy import (BRAIN_LABELS, GADOLINIUM_R1, LABELS, LESION_LABELS, TISSUES, make_labels, physical_axes,
                              smooth_noise)

# Sequence parameters (ms). kind "SE": spin echo; "IR": inversion recovery. "gd": gadolinium given.
SEQUENCES: dict[str, dict] = {
    "T1": {"kind": "SE", "TR": 500.0, "TE": 15.0},
    "T2": {"kind": "SE", "TR": 4000.0, "TE": 100.0},
    "PD": {"kind": "SE", "TR": 4000.0, "TE": 15.0},
    "FLAIR": {"kind": "IR", "TR": 9000.0, "TI": 2500.0, "TE": 100.0},
    "T1c": {"kind": "SE", "TR": 500.0, "TE": 15.0, "gd": True},
}
SCANNER_SCALE = 1000.0
PARTIAL_VOLUME_SIGMA = 0.5  # voxels: the truth is what an ideal scanner at this resolution sees
MISALIGNMENTS = ("none", "rigid", "affine")
TRANSFORM_CONVENTION = "truth_to_observed, LPS mm, 4x4"


@dataclass
class PhantomConfig:
    """What kind of phantom to make; `shape` and `spacing` are in x, y, z order.

    The head scales with the field of view (shape x spacing): 240x240x155 at 1 mm is an adult head.
    `bias_strength` is the largest relative deviation of the bias field (0.2: gains 0.8-1.2),
    `noise` the Rician noise sigma as a fraction of the white-matter intensity.

    >>> config = PhantomConfig(shape=(32, 32, 24), contrasts=("t1", "flair"), misalignment="rigid")
    >>> config.contrasts
    ('T1', 'FLAIR')
    """

    shape: tuple[int, int, int] = (64, 64, 48)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    contrasts: tuple[str, ...] = ("T1", "T2", "PD")
    lesion: bool = True
    bias_strength: float = 0.2
    noise: float = 0.02
    misalignment: str = "none"
    max_rotation_deg: float = 5.0
    max_translation_mm: float = 4.0

    def __post_init__(self) -> None:
        self.shape = tuple(int(n) for n in self.shape)
        self.spacing = tuple(float(s) for s in self.spacing)
        if len(self.shape) != 3 or min(self.shape) < 8:
            raise InputError(f"phantom shape {self.shape}: give three sizes (x, y, z) of at least 8 voxels each.")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise InputError(f"phantom spacing {self.spacing}: give three positive sizes in mm.")
        if isinstance(self.contrasts, str):
            self.contrasts = tuple(self.contrasts.split(","))
        names = tuple(canonical_contrast(c) for c in self.contrasts if c.strip())
        unknown = [c for c in names if c not in SEQUENCES]
        if not names or unknown:
            raise InputError(
                f"phantom contrasts {tuple(self.contrasts)}: unknown {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(SEQUENCES)}."
            )
        if len(set(names)) != len(names):
            raise InputError(f"phantom contrasts {tuple(self.contrasts)}: a contrast is listed twice.")
        self.contrasts = names
        self.misalignment = str(self.misalignment).lower()
        if self.misalignment not in MISALIGNMENTS:
            raise InputError(f"misalignment {self.misalignment!r}: choose one of {', '.join(MISALIGNMENTS)}.")
        if self.bias_strength < 0 or self.noise < 0 or self.max_rotation_deg < 0 or self.max_translation_mm < 0:
            raise InputError("bias_strength, noise, max_rotation_deg and max_translation_mm must not be negative.")


@dataclass
class PhantomSubject:
    """One synthetic subject: observed images and everything needed to score a pipeline on them."""

    name: str
    observed: dict[str, Volume]
    truth: dict[str, Volume]
    bias_fields: dict[str, Volume]
    truth_to_observed: dict[str, np.ndarray]
    labels: Volume
    brain_mask: Volume
    seed: int | None = None
    config: PhantomConfig | None = field(default=None, repr=False)


def signal(pd: np.ndarray, t1: np.ndarray, t2: np.ndarray, sequence: dict) -> np.ndarray:
    """Magnitude signal of a spin-echo or inversion-recovery sequence (times in ms)."""
    tr, te = np.float32(sequence["TR"]), np.float32(sequence["TE"])
    recovery = np.exp(-tr / t1)
    if sequence["kind"] == "IR":
        longitudinal = np.abs(1 - 2 * np.exp(-np.float32(sequence["TI"]) / t1) + recovery)
    else:
        longitudinal = 1 - recovery
    return pd * longitudinal * np.exp(-te / t2)


def random_transform(rng: np.random.Generator, config: PhantomConfig, centre: np.ndarray) -> np.ndarray:
    """A 4x4 truth_to_observed matrix: rotation (and for "affine" scaling and shear) about `centre`, then a shift."""
    angles = np.deg2rad(rng.uniform(-1, 1, 3) * config.max_rotation_deg)
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    linear = rz @ ry @ rx
    if config.misalignment == "affine":
        shear = np.eye(3)
        shear[np.triu_indices(3, 1)] = rng.uniform(-0.02, 0.02, 3)
        linear = linear @ shear @ np.diag(1 + rng.uniform(-0.03, 0.03, 3))
    translation = rng.uniform(-1, 1, 3) * config.max_translation_mm
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = centre + translation - linear @ centre
    return matrix


def move_volume(volume: Volume, truth_to_observed: np.ndarray, nearest: bool = False) -> Volume:
    """Resample `volume` on its own grid so that the anatomy at p moves to truth_to_observed @ p."""
    import SimpleITK as sitk

    inverse = np.linalg.inv(np.asarray(truth_to_observed, float))
    transform = sitk.AffineTransform(3)  # maps output (observed) points to input (truth) points
    transform.SetMatrix(inverse[:3, :3].ravel().tolist())
    transform.SetTranslation(inverse[:3, 3].tolist())
    image = volume.to_sitk()
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    moved = sitk.Resample(image, image, transform, interpolator, 0.0, image.GetPixelID())
    return volume.with_array(sitk.GetArrayFromImage(moved))


def bias_field(rng: np.random.Generator, axes, head: np.ndarray, strength: float) -> np.ndarray:
    """A smooth multiplicative field: exp of a random quadratic polynomial, mean 1 inside `head`.

    Its logarithm spans +-log(1 + strength) inside the head (before the mean is set to 1).
    """
    x, y, z = (a / max(float(np.abs(a).max()), 1e-6) for a in axes)
    c = rng.standard_normal(9).astype(np.float32)
    c[3:] *= 0.7
    # The quadratic as a sum of three planes, so only two full-size additions are needed.
    xy = (c[0] * x + c[3] * x * x)[None, :] + (c[1] * y + c[4] * y * y)[:, None] + c[6] * y[:, None] * x[None, :]
    xz = (c[2] * z + c[5] * z * z)[:, None] + c[7] * z[:, None] * x[None, :]
    log = xy[None, :, :] + xz[:, None, :] + (c[8] * z[:, None] * y[None, :])[:, :, None]
    inside = log[head] if head.any() else log.ravel()
    middle = 0.5 * (float(inside.max()) + float(inside.min()))
    half_range = 0.5 * (float(inside.max()) - float(inside.min()))
    gain = np.log1p(strength) / half_range if half_range > 0 and strength > 0 else 0.0
    log -= np.float32(middle)
    log *= np.float32(gain)
    field_ = np.exp(log)
    return field_ / np.float32(field_[head].mean() if head.any() else field_.mean())


def make_subject(config: PhantomConfig, seed: int, name: str = "sub-000") -> PhantomSubject:
    """A random synthetic subject; the same config and seed always give the same subject.

    >>> s = make_subject(PhantomConfig(shape=(32, 32, 24), contrasts=("T1", "FLAIR")), seed=1)
    >>> sorted(s.observed), s.observed["T1"].shape, s.truth_to_observed["T1"].shape
    (['FLAIR', 'T1'], (24, 32, 32), (4, 4))
    """
    rng = np.random.default_rng(seed)
    spacing = config.spacing
    axes = physical_axes(config.shape, spacing)
    origin = tuple(float(a[0]) for a in axes)
    labels = make_labels(rng, config.shape, spacing, lesion=config.lesion)
    grid = Volume(labels, spacing=spacing, origin=origin, contrast="labels")
    pd, t1, t2, gd = _tissue_maps(rng, labels, axes, config)

    white = labels == LABELS["white_matter"]
    head = labels > 0
    centre = grid.index_to_physical((np.asarray(config.shape) - 1) / 2.0)
    observed, truth, biases, transforms = {}, {}, {}, {}
    for index, contrast in enumerate(config.contrasts):
        truth[contrast] = grid.with_array(_truth_image(pd, t1, t2, gd, SEQUENCES[contrast]), contrast=contrast)
        misalign = index > 0 and config.misalignment != "none"  # the first contrast is the reference
        transforms[contrast], bias, result = _observe(rng, config, truth[contrast], misalign, head, white, centre, axes)
        biases[contrast] = grid.with_array(bias, contrast=contrast)
        observed[contrast] = grid.with_array(result.astype(np.float32), contrast=contrast)

    brain = np.isin(labels, BRAIN_LABELS).astype(np.uint8)
    return PhantomSubject(
        name=name,
        observed=observed,
        truth=truth,
        bias_fields=biases,
        truth_to_observed=transforms,
        labels=grid,
        brain_mask=grid.with_array(brain, contrast="brainmask"),
        seed=seed,
        config=config,
    )


def _tissue_maps(rng: np.random.Generator, labels: np.ndarray, axes, config: PhantomConfig) -> tuple:
    """Per-voxel PD, T1, T2 and gadolinium: the tissues' values, varied per subject, with smooth texture inside each."""
    tissues = TISSUES.copy()
    tissues[1:, :3] *= rng.uniform(0.97, 1.03, (len(tissues) - 1, 3)).astype(np.float32)
    size = float(np.mean(np.asarray(config.shape) * np.asarray(config.spacing)))
    texture_pd = smooth_noise(rng, axes, 0.03 * size)
    texture_t = smooth_noise(rng, axes, 0.05 * size)
    pd = tissues[labels, 0] * (1 + 0.03 * texture_pd)
    t1 = tissues[labels, 1] * (1 + 0.04 * texture_t)
    t2 = tissues[labels, 2] * (1 + 0.04 * texture_t)
    gd = tissues[labels, 3]
    return pd, t1, t2, gd


def _truth_image(pd: np.ndarray, t1: np.ndarray, t2: np.ndarray, gd: np.ndarray, sequence: dict) -> np.ndarray:
    """One contrast as an ideal scanner at this resolution sees it (T1 shortened by gadolinium if given)."""
    relax = 1 / (1 / t1 + np.float32(GADOLINIUM_R1) * gd) if sequence.get("gd") else t1
    image = (signal(pd, relax, t2, sequence) * np.float32(SCANNER_SCALE)).astype(np.float32)
    return ndimage.gaussian_filter(image, PARTIAL_VOLUME_SIGMA, truncate=3.0)  # point spread: partial volume


def _observe(rng: np.random.Generator, config: PhantomConfig, truth: Volume, misalign: bool, head: np.ndarray,
             white: np.ndarray, centre: np.ndarray, axes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The truth as observed: moved (if `misalign`), times a bias field, with Rician noise; (transform, bias, image)."""
    image = truth.array
    if not misalign:
        matrix = np.eye(4)
        moved, moved_head = image, head
    else:
        matrix = random_transform(rng, config, centre)
        moved = move_volume(truth, matrix).array
        moved_head = moved > 0  # background is exactly 0 before noise
    bias = bias_field(rng, axes, moved_head, config.bias_strength)
    result = moved * bias
    if config.noise > 0:
        sigma = np.float32(config.noise * (float(image[white].mean()) if white.any() else float(image.max())))
        real = result + sigma * rng.standard_normal(result.shape, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(result.shape, dtype=np.float32)
        result = np.sqrt(real * real + imaginary * imaginary)
    return matrix, bias, result


def write_subject(subject: PhantomSubject, folder: Path) -> Path:
    """Write a subject: observed images in `folder`, the truth in `folder/truth`; returns `folder`.

    Layout: `<name>_<C>.nii.gz` (observed), `truth/<name>_<C>.nii.gz`, `truth/<name>_bias_<C>.nii.gz`,
    `truth/<name>_labels.nii.gz`, `truth/<name>_brainmask.nii.gz` and `truth/transforms.json`; with a
    lesion also `<name>_seg.nii.gz`, its tumour mask (0/1: necrosis, enhancing rim and edema) as a
    data set ships one, on the first contrast's grid and anatomy (the reference, never moved).
    """
    folder = Path(folder)
    name = subject.name
    # Written into a temporary sibling and renamed at the end: a cancelled run leaves no half subject.
    with atomic_directory(folder) as tmp:
        truth = tmp / "truth"
        for contrast, volume in subject.observed.items():
            write_volume(volume, tmp / f"{name}_{contrast}.nii.gz", dtype=np.float32)
        for contrast, volume in subject.truth.items():
            write_volume(volume, truth / f"{name}_{contrast}.nii.gz", dtype=np.float32)
        for contrast, volume in subject.bias_fields.items():
            write_volume(volume, truth / f"{name}_bias_{contrast}.nii.gz", dtype=np.float32)
        write_volume(subject.labels, truth / f"{name}_labels.nii.gz", dtype=np.uint8)
        write_volume(subject.brain_mask, truth / f"{name}_brainmask.nii.gz", dtype=np.uint8)
        lesion = np.isin(subject.labels.array, LESION_LABELS)
        if lesion.any():
            write_volume(subject.labels.with_array(lesion.astype(np.uint8), contrast="seg"), tmp / f"{name}_seg.nii.gz",
                         dtype=np.uint8)
        record = {
            "convention": TRANSFORM_CONVENTION,
            "transforms": {c: np.asarray(m, float).tolist() for c, m in subject.truth_to_observed.items()},
            "reference": next(iter(subject.observed)),
            "seed": subject.seed,
            "config": asdict(subject.config) if subject.config is not None else None,
            "labels": LABELS,
        }
        write_text(truth / "transforms.json", json.dumps(record, indent=2) + "\n")
    return folder


def write_phantom(
    out: Path,
    subjects: int,
    config: PhantomConfig,
    seed: int = 0,
    on_progress: Callable[[float, str], None] | None = None,
) -> list[Path]:
    """Write `subjects` subjects as out/sub-000, out/sub-001, ...; subject i uses seed `seed + i`."""
    out = check_output_folder(out, "OUT")
    if subjects < 1:
        raise InputError(f"--subjects {subjects}: give at least 1.")
    width = max(3, len(str(subjects - 1)))
    folders = []
    for i in range(subjects):
        name = f"sub-{i:0{width}d}"
        folders.append(write_subject(make_subject(config, seed + i, name=name), out / name))
        if on_progress is not None:
            on_progress((i + 1) / subjects, f"{name} written")
    return folders
