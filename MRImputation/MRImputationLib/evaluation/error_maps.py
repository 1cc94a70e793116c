"""Error maps: a synthesized volume against a real one of the same contrast.

Both are brought to the real volume's units: the synthetic volume is in the model's normalized
units (1000 = the 99.5th percentile inside the brain), so it is mapped through the real volume's
own normalization. Then the project metrics (EVALUATION.md), an absolute-difference volume, and a
picture truth | synthesis | error on a few axial slices.
"""

from __future__ import annotations

import numpy as np

from ..core.volume import Volume

SYNTHETIC_SCALE = 1000.0  # synthetic volumes are written as normalized units × this


def to_real_units(synthetic: Volume, real: Volume, mask: np.ndarray, method: str = "percentile") -> Volume:
    """The synthetic volume (normalized × 1000) in the real volume's intensity units."""
    from ..preprocessing.normalization import NormalizationConfig, fit_normalization

    params = fit_normalization(real, real.with_array(mask.astype(np.uint8)), NormalizationConfig(method=method))
    return synthetic.with_array((synthetic.array.astype(np.float64) / SYNTHETIC_SCALE * params.scale
                                 + params.offset).astype(np.float32))


def compare_volumes(synthetic: Volume, real: Volume, mask: Volume | None = None, normalized: bool = True) -> dict:
    """Metrics and the absolute error of `synthetic` against `real` (resampled onto real's grid if needed)."""
    from ..preprocessing.masking import brain_mask
    from ..preprocessing.registration import resample_to
    from .metrics import legacy_metrics, project_metrics

    if not synthetic.same_grid(real):
        synthetic = resample_to(synthetic, real)
    mask_array = (brain_mask([real]).array if mask is None else
                  (mask if mask.same_grid(real) else resample_to(mask, real, interpolation="nearest")).array) > 0
    in_units = to_real_units(synthetic, real, mask_array) if normalized else synthetic
    metrics = project_metrics(in_units.array, real.array.astype(np.float32), mask_array)
    metrics.update({f"legacy_{k}": v for k, v in legacy_metrics(in_units.array, real.array.astype(np.float32)).items()
                    if k in ("psnr", "ssim")})
    error = np.abs(in_units.array - real.array.astype(np.float32)) * mask_array
    return {"metrics": metrics, "error": real.with_array(error.astype(np.float32)), "synthetic": in_units,
            "mask": real.with_array(mask_array.astype(np.uint8))}
