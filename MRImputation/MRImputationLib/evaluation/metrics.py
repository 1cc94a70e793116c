"""Image-quality metrics for synthesized contrasts, exactly as EVALUATION.md defines them.

Two families, kept apart on purpose:

- `project_metrics`: the project's metric, used for every decision. Brain-masked, in the true
  volume's units (its 99.5th percentile inside the mask), clipped to [0, 1], `data_range = 1`.
- `legacy_metrics`: MM-GAN's per-slice, whole-image, max-normalized metric. Reported for
  continuity only: it hides global intensity errors and is inflated by background.

Arrays are (z, y, x); "axial slice" means a slice along axis 0. A perfect prediction has an
infinite PSNR: the functions return `float("inf")` and the reports print it as "inf".

>>> import numpy as np
>>> truth = np.random.default_rng(0).uniform(0.2, 1.0, (2, 16, 16))
>>> mask = np.ones(truth.shape, bool)
>>> project_metrics(truth, truth, mask)["ssim"]
1.0
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..core.errors import InputError

UNITS_PERCENTILE = 99.5
SSIM_SIGMA = 1.5
# skimage's Gaussian window for sigma 1.5 has radius int(3.5 * 1.5 + 0.5) = 5, i.e. 11 taps.
SSIM_RADIUS = 5
MIN_PAIRED_SUBJECTS = 5
# legacy_metrics skips a slice whose truth varies by no more than this fraction of its maximum.
CONSTANT_SLICE_TOLERANCE = 1e-6


def _check_shapes(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> None:
    if prediction.shape != truth.shape or (mask is not None and mask.shape != truth.shape):
        shapes = f"prediction {prediction.shape}, truth {truth.shape}" + ("" if mask is None else f", mask {mask.shape}")
        raise InputError(f"metrics need arrays on one grid, got {shapes}: resample the prediction onto the reference grid first.")
    if truth.ndim != 3:
        raise InputError(f"metrics take (z, y, x) volumes, got {truth.ndim}-D arrays of shape {truth.shape}.")
    if min(truth.shape[1:]) < 2 * SSIM_RADIUS + 1:
        raise InputError(
            f"axial slices of {truth.shape[1]}x{truth.shape[2]} voxels are smaller than the 11x11 SSIM window; "
            "evaluate at native resolution, not on a tiny crop."
        )


def _ssim_map(truth_slice: np.ndarray, prediction_slice: np.ndarray) -> tuple[float, np.ndarray]:
    """skimage's (mean SSIM over the valid region, full SSIM map) of one 2-D slice, data_range 1."""
    from skimage.metrics import structural_similarity

    return structural_similarity(
        truth_slice,
        prediction_slice,
        gaussian_weights=True,
        sigma=SSIM_SIGMA,
        use_sample_covariance=False,
        data_range=1.0,
        full=True,
    )


def _psnr(mse: float, peak: float = 1.0) -> float:
    return math.inf if mse <= 0 else float(10.0 * math.log10(peak * peak / mse))


def evaluation_units(truth: np.ndarray, mask: np.ndarray) -> float:
    """The divisor that expresses a true volume (and its prediction) in evaluation units.

    The 99.5th percentile of `truth` inside `mask`. Raises InputError when the mask is empty or
    the percentile is not positive (nothing to measure against).
    """
    mask = np.asarray(mask, bool)
    if mask.shape != truth.shape:
        raise InputError(f"brain mask of shape {mask.shape} does not match the true volume's {truth.shape}.")
    values = np.asarray(truth)[mask]
    if values.size == 0:
        raise InputError("the brain mask is empty: no voxel to evaluate. Check the mask (non-zero voxels of the true volume).")
    units = float(np.percentile(values.astype(np.float64), UNITS_PERCENTILE))
    if not units > 0:
        raise InputError(
            f"the true volume's {UNITS_PERCENTILE}th percentile inside the brain mask is {units:g}: "
            "it is empty or negative there, so it cannot serve as ground truth."
        )
    return units


def project_metrics(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray,
                    regions: dict[str, np.ndarray] | None = None) -> dict:
    """PSNR (dB), SSIM and MAE of `prediction` against `truth` inside the brain `mask`.

    Both arrays are (z, y, x) on the reference grid in the truth's original units; both are divided
    by `evaluation_units(truth, mask)` and clipped to [0, 1]. PSNR = 10·log10(1 / MSE over mask
    voxels); MAE over mask voxels; SSIM is skimage's full 2-D map per axial slice (Gaussian σ 1.5,
    population covariance, data_range 1) averaged over the mask voxels of the whole volume.
    Slices with no mask voxel are skipped: they contribute nothing to that average.

    Returns {"psnr", "ssim", "mae"} plus "mse" and "units" (the divisor used).

    `regions` (name -> boolean array on the same grid, e.g. {"tumour": t, "nontumour": ~t}) adds
    "<name>_psnr" and "<name>_ssim" for the brain voxels inside each region, BraSyn's way: the same
    units, and the same SSIM map averaged over that region's voxels (not recomputed on a crop).
    A region with no brain voxel gets NaN scores.

    Outside the mask both images are set to 0 before SSIM, so nothing outside the brain changes
    any of the three scores (otherwise SSIM windows within 5 voxels of the brain's edge would
    reward or punish a method's background).

    >>> import numpy as np
    >>> truth = np.full((1, 12, 12), 1.0); mask = np.ones_like(truth, bool)
    >>> round(project_metrics(truth * 0.9, truth, mask)["psnr"], 6)  # MSE 0.01 -> 20 dB
    20.0
    """
    prediction = np.asarray(prediction)
    truth = np.asarray(truth)
    mask = np.asarray(mask, bool)
    _check_shapes(prediction, truth, mask)
    units = evaluation_units(truth, mask)
    # Background is zeroed in both, so no SSIM window at the brain's edge sees what a method put
    # outside the brain (or the skull in the truth): the scores depend on brain voxels only.
    p = np.where(mask, np.clip(prediction.astype(np.float64) / units, 0.0, 1.0), 0.0)
    t = np.where(mask, np.clip(truth.astype(np.float64) / units, 0.0, 1.0), 0.0)
    difference = p[mask] - t[mask]
    mse = float(np.mean(difference**2))
    ssim_sum, counted = 0.0, 0
    ssim_volume = np.zeros(t.shape) if regions else None
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        _, ssim_map = _ssim_map(t[z], p[z])
        ssim_sum += float(ssim_map[mask[z]].sum())
        counted += int(mask[z].sum())
        if ssim_volume is not None:
            ssim_volume[z] = ssim_map
    scores = {
        "psnr": _psnr(mse),
        "ssim": ssim_sum / counted,
        "mae": float(np.mean(np.abs(difference))),
        "mse": mse,
        "units": units,
    }
    for name, region in (regions or {}).items():
        scores.update(_region_scores(name, region, mask, p, t, ssim_volume))
    return scores


def _region_scores(name: str, region: np.ndarray, mask: np.ndarray, p: np.ndarray, t: np.ndarray,
                   ssim_volume: np.ndarray) -> dict:
    """PSNR and SSIM over the brain voxels of one region, from the whole volume's units and SSIM map."""
    region = np.asarray(region, bool)
    if region.shape != mask.shape:
        raise InputError(f"the {name} region has shape {region.shape}, the volumes {mask.shape}: give it on the same grid.")
    inside = region & mask
    if not inside.any():
        return {f"{name}_psnr": math.nan, f"{name}_ssim": math.nan}
    mse = float(np.mean((p[inside] - t[inside]) ** 2))
    return {f"{name}_psnr": _psnr(mse), f"{name}_ssim": float(ssim_volume[inside].mean())}


def _constant(image: np.ndarray) -> bool:
    """Whether a slice holds no structure: empty, or one value everywhere (up to float rounding)."""
    top, bottom = float(image.max()), float(image.min())
    return not top > 0 or top - bottom <= CONSTANT_SLICE_TOLERANCE * abs(top)


def legacy_metrics(prediction: np.ndarray, truth: np.ndarray) -> dict:
    """MM-GAN's metric: per axial slice, whole image, each image divided by its own maximum.

    Per slice: MSE, PSNR = 20·log10(1/√MSE), and SSIM with an 11×11 Gaussian window (σ 1.5) and
    no padding, i.e. skimage's mean SSIM, which averages only the valid region (the 5-voxel filter
    radius at each border is cropped), with population covariance and data_range 1. PSNR, SSIM and
    MSE are then averaged over slices.

    Choices where the original is undefined: slices whose truth is empty or constant (its maximum
    not positive, or one value everywhere up to float rounding: background above or below the
    head, a grey background) are skipped. Such a slice has no structure to score, divided by its
    maximum it becomes all ones, and a method that puts the same constant there (e.g. the
    background every imputer leaves outside the brain, mapped back to original units) matches it
    exactly: an infinite PSNR that made the whole average infinite. A prediction slice whose
    maximum is not positive is left undivided. An exact prediction of a slice with structure
    still scores an infinite PSNR (a perfect prediction). Returns the number of slices scored.

    >>> import numpy as np
    >>> truth = np.random.default_rng(0).uniform(1, 2, (3, 16, 16)); truth[0] = 30.0
    >>> prediction = truth * 1.1; prediction[0] = 30.0  # the constant slice matched exactly
    >>> scores = legacy_metrics(prediction, truth)
    >>> bool(np.isfinite(scores["psnr"])), scores["n_slices"]
    (True, 2)
    """
    prediction = np.asarray(prediction, np.float64)
    truth = np.asarray(truth, np.float64)
    _check_shapes(prediction, truth)
    psnrs, ssims, mses = [], [], []
    for z in range(truth.shape[0]):
        if _constant(truth[z]):
            continue
        t = truth[z] / truth[z].max()
        p_max = prediction[z].max()
        p = prediction[z] / p_max if p_max > 0 else prediction[z]
        mse = float(np.mean((p - t) ** 2))
        mses.append(mse)
        psnrs.append(math.inf if mse <= 0 else float(20.0 * math.log10(1.0 / math.sqrt(mse))))
        ssims.append(float(_ssim_map(t, p)[0]))
    if not psnrs:
        raise InputError("the true volume is empty or constant in every axial slice: no slice can be scored with "
                         "the legacy metric. Check that the truth is the right image.")
    return {
        "psnr": float(np.mean(psnrs)),
        "ssim": float(np.mean(ssims)),
        "mse": float(np.mean(mses)),
        "n_slices": len(psnrs),
    }


def paired_test(a: Sequence[float], b: Sequence[float]) -> dict | None:
    """Wilcoxon signed-rank test of paired scores `a` and `b` (same subjects, same order).

    Pairs where either score is not finite (e.g. an infinite PSNR) are left out; with fewer than
    five pairs left the test is not run and None is returned. Otherwise a dict with the test name,
    n, the statistic, the two-sided p-value and the median of a − b. Identical scores give p = 1.

    >>> paired_test([1, 2, 3], [1, 2, 4]) is None
    True
    >>> round(paired_test([2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6])["median_difference"], 3)
    1.0
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise InputError(f"a paired test needs scores of the same subjects, got {a.size} and {b.size} values.")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(a.size)
    if n < MIN_PAIRED_SUBJECTS:
        return None
    differences = a - b
    result = {"test": "wilcoxon signed-rank", "n": n, "median_difference": float(np.median(differences))}
    if not np.any(differences):
        return {**result, "statistic": 0.0, "p_value": 1.0}
    from scipy.stats import wilcoxon

    test = wilcoxon(a, b)
    return {**result, "statistic": float(test.statistic), "p_value": float(test.pvalue)}
