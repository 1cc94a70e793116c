"""Rigid or affine, multi-modal registration of one contrast onto another (SimpleITK, Mattes MI).

Why SimpleITK and not `ants.registration`: both run ITK's v4 registration framework, but
ANTsPy's defaults (`type_of_transform="Affine"`: shrink 6x4x2x1, up to 2100x1200x1200x10 iterations,
20 % of all voxels sampled, full-resolution pyramid smoothing, warped outputs in both directions)
take ~24 s for a 240x240x155 pair on 2 cores. Here the pyramid is built once by block averaging
(cheap), the metric sees a fixed number of random samples (20 000) restricted to the fixed image's
foreground plus a margin, and the levels stop early; on the real test cases this takes ~2-3 s with
the same residual (see Testing/Benchmarks/bench_preprocessing.py). The same knobs exist in ANTsPy,
but only SimpleITK exposes a per-level sample count and a metric mask on a coarser grid.

Transforms are returned as 4x4 matrices in physical LPS millimetres, mapping a point of the fixed
image's space to the corresponding point of the moving image's space (ITK's resampling convention;
it is also what `ants.apply_transforms(fixed, moving, transformlist)` expects).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError
from ..core.volume import Volume


@dataclass
class RegistrationConfig:
    """Speed/accuracy parameters; defaults tuned on the real cases (T2 onto T1 or FLAIR, rotations up
    to 15 deg and translations up to 15 mm, 3 cases x 3 seeds: residual <= 0.75 mm, ~2-3 s).

    - levels_mm: pyramid voxel sizes. The 8 mm level (a few thousand voxels, ~0.2 s) widens the
      capture range (15 deg / 15 mm: 2.4 mm worst residual without it, 0.7 mm with); 1 mm is needed
      for sub-millimetre residuals (stopping at 2 mm leaves ~1 mm).
    - samples: random metric samples per level. 20 000 gives the same residual as 40 000 in half
      the time; 10 000 is as accurate but less stable on the affine levels.
    - iterations / affine_iterations / step_mm / min_step: regular-step gradient descent per
      level; the step (mm of physical shift) halves on every reversal and the level stops below
      min_step. Coarse levels need no sub-0.01 mm precision (larger min_step saves iterations); a
      uniform 0.01 mm min_step leaves up to 2 mm at the end.
    - mask_margin_mm: the metric only samples the fixed foreground dilated by this margin. A tight
      brain mask biases affine scaling up (~+2 %), no mask biases it down (~-1 %); 8-20 mm is unbiased
      (the mask lives on the coarsest grid: 12 mm rounds to 2 voxels of 8 mm).
    - affine_from_level: in "affine" mode, levels before this one are rigid (a 12-parameter fit at
      4-8 mm is unstable and gains nothing).
    """

    kind: str = "rigid"  # "rigid" | "affine"
    levels_mm: tuple[float, ...] = (8.0, 4.0, 2.0, 1.0)
    samples: int = 20000
    iterations: tuple[int, ...] = (100, 100, 50, 30)
    affine_iterations: tuple[int, ...] = (100, 100, 100, 50)
    step_mm: tuple[float, ...] = (4.0, 2.0, 0.5, 0.25)
    min_step: tuple[float, ...] = (0.02, 0.005, 0.001, 0.001)
    histogram_bins: int = 32
    mask_margin_mm: float = 12.0
    affine_from_level: int = 2
    seed: int = 1234
    threads: int | None = None  # None: every core this process may use

    def __post_init__(self) -> None:
        if self.kind not in ("rigid", "affine"):
            raise ValueError(f"kind must be 'rigid' or 'affine', got {self.kind!r}")
        n = len(self.levels_mm)
        if not (len(self.iterations) == len(self.affine_iterations) == len(self.step_mm) == len(self.min_step) == n):
            raise ValueError("levels_mm, iterations, affine_iterations, step_mm and min_step need one entry per level")


@dataclass
class RegistrationResult:
    volume: Volume  # moving resampled onto the fixed grid (linear), contrast name kept
    fixed_to_moving: np.ndarray  # 4x4, LPS mm: fixed point p <-> moving point fixed_to_moving @ [p, 1]
    seconds: float
    metric_value: float | None


def available_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _name(volume: Volume, default: str = "the image") -> str:
    return volume.source or volume.contrast or default


def _float_image(volume: Volume):
    import SimpleITK as sitk

    return sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)


def _shrink(image, target_mm: float, min_voxels: int = 16):
    """Block-average to about target_mm voxels (per axis; never upsamples, keeps >= min_voxels per
    axis so small images keep enough samples for the histogram): a cheap anti-aliased pyramid."""
    import SimpleITK as sitk

    factors = [
        max(1, min(int(round(target_mm / s)), n // min_voxels)) for s, n in zip(image.GetSpacing(), image.GetSize())
    ]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def _corners(image) -> np.ndarray:
    size = np.array(image.GetSize()) - 1
    idx = np.array([[i, j, k] for i in (0, size[0]) for j in (0, size[1]) for k in (0, size[2])], float)
    d = np.array(image.GetDirection()).reshape(3, 3)
    return (idx * np.array(image.GetSpacing())) @ d.T + np.array(image.GetOrigin())


def _check_overlap(fixed_img, moving_img, moving: Volume, fixed: Volume) -> None:
    a, b = _corners(fixed_img), _corners(moving_img)
    moving_name, fixed_name = _name(moving, "the moving image"), _name(fixed, "the reference image")
    lo, hi = np.maximum(a.min(0), b.min(0)), np.minimum(a.max(0), b.max(0))
    if np.any(hi <= lo):
        raise InputError(
            f"{moving_name}: does not overlap {fixed_name} in physical space (their fields of view are "
            f"{np.round(b.min(0))}..{np.round(b.max(0))} mm and {np.round(a.min(0))}..{np.round(a.max(0))} mm), so they "
            "cannot be registered. Check that both images come from the same patient and session and that the "
            "file headers keep the scanner coordinates (re-export them from the scanner/PACS without re-centring)."
        )


def _metric_mask(fixed_coarse, fixed_mask: Volume | None, margin_mm: float):
    """Foreground (Otsu, or the given mask) on the coarsest grid, dilated by margin_mm."""
    import SimpleITK as sitk

    if fixed_mask is not None:
        m = fixed_mask.with_array((fixed_mask.array != 0).astype(np.uint8)).to_sitk()
        m = sitk.Resample(m, fixed_coarse, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    else:
        m = sitk.OtsuThreshold(fixed_coarse, 0, 1)
    if not sitk.GetArrayViewFromImage(m).any():
        return None
    radius = [int(round(margin_mm / s)) for s in fixed_coarse.GetSpacing()]
    return sitk.BinaryDilate(m, radius) if max(radius) > 0 else m


def _transform_to_matrix(transform) -> np.ndarray:
    """ITK matrix-offset transform (y = A(x - c) + c + t) as a 4x4 matrix."""
    a = np.array(transform.GetMatrix(), float).reshape(3, 3)
    c = np.array(transform.GetCenter(), float)
    t = np.array(transform.GetTranslation(), float)
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = a, t + c - a @ c
    return m


def _matrix_to_transform(matrix: np.ndarray):
    import SimpleITK as sitk

    m = np.asarray(matrix, float)
    if m.shape != (4, 4) or not np.allclose(m[3], [0, 0, 0, 1]):
        raise ValueError(f"expected a 4x4 affine matrix, got {m.shape}")
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(m[:3, :3].ravel().tolist())
    transform.SetTranslation(m[:3, 3].tolist())
    return transform


def matrix_from_ants_transform(transform_or_path) -> np.ndarray:
    """4x4 fixed_to_moving matrix of an ANTs affine transform (an ANTsTransform or its .mat file)."""
    import ants

    tx = transform_or_path
    if isinstance(tx, (str, os.PathLike)):
        tx = ants.read_transform(str(tx))
    p, c = np.asarray(tx.parameters, float), np.asarray(tx.fixed_parameters, float)[:3]
    a, t = p[:9].reshape(3, 3), p[9:12]
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = a, t + c - a @ c
    return m


def _to_affine(transform):
    import SimpleITK as sitk

    if isinstance(transform, sitk.AffineTransform):
        return transform
    affine = sitk.AffineTransform(3)
    affine.SetCenter(transform.GetCenter())
    affine.SetMatrix(transform.GetMatrix())
    affine.SetTranslation(transform.GetTranslation())
    return affine


def _run_level(fixed_img, moving_img, transform, mask, config: RegistrationConfig, level: int, threads: int):
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(threads)
    method.SetMetricAsMattesMutualInformation(config.histogram_bins)
    method.MetricUseFixedImageGradientFilterOff()  # gradients on the fly: no full-resolution gradient image
    method.MetricUseMovingImageGradientFilterOff()
    voxels = float(np.prod(fixed_img.GetSize()))
    if mask is not None:
        method.SetMetricFixedMask(mask)  # checked in physical space, so the coarse grid serves every level
        voxels *= float(sitk.GetArrayViewFromImage(mask).mean())
    fraction = min(1.0, config.samples / max(voxels, 1.0))
    if fraction < 1.0:
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(fraction, config.seed)
    method.SetInterpolator(sitk.sitkLinear)
    iterations = (config.affine_iterations if config.kind == "affine" else config.iterations)[level]
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=config.step_mm[level], numberOfIterations=int(iterations),
        minStep=config.min_step[level],
        relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetInitialTransform(transform, inPlace=True)
    method.Execute(fixed_img, moving_img)
    return method.GetMetricValue()


def register(
    moving: Volume,
    fixed: Volume,
    config: RegistrationConfig | None = RegistrationConfig(),
    fixed_mask: Volume | None = None,
) -> RegistrationResult:
    """Register `moving` onto `fixed` (any grids, any orientations: only physical space matters).

    Initialised by aligning the intensity centres of mass; metric: Mattes mutual information, so
    the two contrasts may differ. Raises InputError when the images do not overlap or the
    optimisation fails or diverges.
    """
    import SimpleITK as sitk

    start = time.perf_counter()
    config = config or RegistrationConfig()
    moving_name, fixed_name = _name(moving, "the moving image"), _name(fixed, "the reference image")
    threads = config.threads or available_threads()
    fixed_full, moving_full = _float_image(fixed), _float_image(moving)
    _check_overlap(fixed_full, moving_full, moving, fixed)
    pyramid = [(_shrink(fixed_full, mm), _shrink(moving_full, mm)) for mm in config.levels_mm]
    mask = _metric_mask(pyramid[0][0], fixed_mask, config.mask_margin_mm)
    if mask is None:
        raise InputError(
            f"{fixed_name}: has no foreground (empty image or empty mask); it cannot serve as the reference."
        )
    try:
        mid = pyramid[min(1, len(pyramid) - 1)]
        transform = sitk.CenteredTransformInitializer(
            mid[0], mid[1], sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
        )
        metric = None
        for level, (fixed_img, moving_img) in enumerate(pyramid):
            if config.kind == "affine" and level >= config.affine_from_level:
                transform = _to_affine(transform)
            metric = _run_level(fixed_img, moving_img, transform, mask, config, level, threads)
    except RuntimeError as error:
        last = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reason"
        raise InputError(
            f"{moving_name}: registration onto {fixed_name} failed ({last}). Check that both images show "
            "the same anatomy with some overlap; if they start far apart, align them roughly by hand first "
            "(e.g. in Slicer's Transforms module), or skip registration (--no-register) if they are already aligned."
        ) from None
    matrix = _transform_to_matrix(transform)
    singular = np.linalg.svd(matrix[:3, :3], compute_uv=False)
    if not np.all(np.isfinite(matrix)) or singular.min() < 0.67 or singular.max() > 1.5:
        raise InputError(
            f"{moving_name}: registration onto {fixed_name} diverged (scaling {np.round(singular, 2)}). "
            "Check that the images show the same anatomy; try kind='rigid' or align them roughly by hand first."
        )
    registered = resample_to(moving, fixed, matrix, "linear")
    seconds = time.perf_counter() - start
    return RegistrationResult(registered, matrix, seconds, float(metric) if metric is not None else None)


_INTERPOLATORS = {"linear": "sitkLinear", "nearest": "sitkNearestNeighbor", "bspline": "sitkBSpline"}


def resample_to(
    volume: Volume,
    reference: Volume,
    fixed_to_moving: np.ndarray | None = None,
    interpolation: str = "linear",
) -> Volume:
    """`volume` sampled on `reference`'s grid: voxel at p takes volume's value at fixed_to_moving @ p.

    Outside `volume`'s field of view the value is 0. Linear/B-spline output is float32; nearest
    keeps the input dtype (labels, masks).
    """
    import SimpleITK as sitk

    if interpolation not in _INTERPOLATORS:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATORS)}, got {interpolation!r}")
    image = volume.to_sitk()
    if interpolation != "nearest":
        image = sitk.Cast(image, sitk.sitkFloat32)
    transform = _matrix_to_transform(np.eye(4) if fixed_to_moving is None else fixed_to_moving)
    out = sitk.Resample(
        image, [int(s) for s in reference.size_xyz], transform, getattr(sitk, _INTERPOLATORS[interpolation]),
        reference.origin, reference.spacing, reference.direction, 0.0, image.GetPixelID(),
    )
    return Volume(
        sitk.GetArrayFromImage(out), reference.spacing, reference.origin, reference.direction,
        contrast=volume.contrast, source=volume.source,
    )


def mean_displacement_mm(a: np.ndarray, b: np.ndarray, points_lps: np.ndarray) -> float:
    """Mean distance |a·p − b·p| (mm) over points (N×3, LPS mm) between two 4x4 transforms."""
    points = np.asarray(points_lps, float).reshape(-1, 3)
    homogeneous = np.c_[points, np.ones(len(points))]
    diff = homogeneous @ (np.asarray(a, float) - np.asarray(b, float)).T
    return float(np.linalg.norm(diff[:, :3], axis=1).mean())
