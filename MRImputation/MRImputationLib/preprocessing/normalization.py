"""Per-volume intensity normalization with recorded, exactly invertible parameters.

Every method is an affine map ``normalized = (raw - offset) / scale``, optionally followed by
clipping; the parameters are recorded so that outputs go back to the input's units with
``raw = normalized * scale + offset``.

Methods (``NormalizationConfig.method``):

- ``"percentile"`` (project default): ``offset`` = the ``lower_percentile``-th percentile and
  ``offset + scale`` = the ``upper_percentile``-th percentile of the voxels *inside the brain
  mask* (all voxels when no mask is given). The lower percentile maps to 0, the upper to 1.
  Voxels outside the mask go through the same linear map (background is not forced to 0), so
  the map stays invertible everywhere. Robust to a few outlier voxels and to scanner scale.
- ``"minmax"`` (configuration seed-ixi): minimum → 0, maximum → 1 over the whole volume (the
  mask is ignored, as in the source).
- ``"mean"`` (configuration mmgan-faithful): divide by the mean of the whole volume, background
  included (mask ignored), then set negatives to 0. That clip at 0 is recorded; denormalize
  cannot bring back negative input values.

With ``clip=True`` the normalized values are also clipped to [0, 1]; values outside that range
are then lost (recorded as ``clip_low``/``clip_high``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..core.volume import Volume

METHODS = ("percentile", "minmax", "mean")


@dataclass
class NormalizationConfig:
    method: str = "percentile"
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    clip: bool = False

    RECORD_KEYS = ("method", "lower_percentile", "upper_percentile")  # what bundles record

    @classmethod
    def from_record(cls, record: dict) -> "NormalizationConfig":
        """The configuration named by a bundle's `normalization` entry or a parameters record; keys
        that are absent or None keep the defaults.

        >>> NormalizationConfig.from_record({"method": "percentile", "lower_percentile": 1.0, "offset": 3.0})
        NormalizationConfig(method='percentile', lower_percentile=1.0, upper_percentile=99.5, clip=False)
        """
        return cls(**{key: record[key] for key in cls.RECORD_KEYS if record.get(key) is not None})

    def to_record(self) -> dict:
        return {key: getattr(self, key) for key in self.RECORD_KEYS}

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown normalization method {self.method!r}; use one of {', '.join(METHODS)}")
        if not 0.0 <= self.lower_percentile < self.upper_percentile <= 100.0:
            raise ValueError(
                "percentiles must satisfy 0 <= lower < upper <= 100, "
                f"got {self.lower_percentile}, {self.upper_percentile}"
            )


@dataclass
class NormalizationParameters:
    """What `normalize` did to one volume: ``(raw - offset) / scale``, then clip to [clip_low, clip_high].

    ``clip_low``/``clip_high`` are in normalized units; None means no clipping on that side.
    ``lower_value``/``upper_value`` record the raw statistics the map was fitted on.

    >>> p = NormalizationParameters("percentile", offset=10.0, scale=90.0)
    >>> NormalizationParameters.from_dict(p.to_dict()) == p
    True
    """

    method: str
    offset: float
    scale: float
    clip_low: float | None = None
    clip_high: float | None = None
    lower_percentile: float | None = None
    upper_percentile: float | None = None
    lower_value: float | None = None
    upper_value: float | None = None
    mask_voxels: int | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale) and self.scale > 0 and np.isfinite(self.offset)):
            raise ValueError(
                f"normalization needs a finite offset and a positive scale, got {self.offset}, {self.scale}"
            )

    def to_dict(self) -> dict:
        """Plain JSON types (floats, ints, None) only."""
        return {key: (value.item() if isinstance(value, np.generic) else value) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "NormalizationParameters":
        """Inverse of to_dict; unknown keys (from newer versions) are ignored."""
        known = {f.name for f in fields(cls)}
        missing = {"method", "offset", "scale"} - set(data)
        if missing:
            raise ValueError(f"normalization parameters lack {', '.join(sorted(missing))}")
        return cls(**{key: value for key, value in data.items() if key in known})


def fit_normalization(
    volume: Volume, mask: Volume | np.ndarray | None = None, config: NormalizationConfig | None = None
) -> NormalizationParameters:
    """Fit the normalization of one volume (see the module notes for each method's definition).

    >>> import numpy as np
    >>> v = Volume(np.arange(1000, dtype=np.float32).reshape(10, 10, 10))
    >>> p = fit_normalization(v, None, NormalizationConfig(lower_percentile=0, upper_percentile=100))
    >>> p.offset, p.scale
    (0.0, 999.0)
    """
    config = config or NormalizationConfig()
    array = volume.array
    clip_low, clip_high = (0.0, 1.0) if config.clip else (None, None)
    if config.method == "percentile":
        values = array[_mask_array(mask, volume)] if mask is not None else array.ravel()
        if values.size == 0:
            raise ValueError("the brain mask is empty: no voxel to compute percentiles on")
        lower, upper = np.percentile(values.astype(np.float64), [config.lower_percentile, config.upper_percentile])
        scale = upper - lower
        if not scale > 0:  # flat inside the mask: fall back to the full range, then to 1
            scale = float(values.max()) - float(lower) or 1.0
        return NormalizationParameters(
            "percentile", float(lower), float(scale), clip_low, clip_high,
            config.lower_percentile, config.upper_percentile, float(lower), float(upper), int(values.size),
        )  # fmt: skip
    if config.method == "minmax":
        low, high = float(array.min()), float(array.max())
        return NormalizationParameters(
            "minmax", low, (high - low) or 1.0, clip_low, clip_high, lower_value=low, upper_value=high
        )
    mean = float(np.mean(array, dtype=np.float64))
    if not mean > 0:
        raise ValueError(f"the volume's mean is {mean}; the 'mean' normalization needs a positive mean")
    return NormalizationParameters("mean", 0.0, mean, 0.0, clip_high, upper_value=mean)


def normalize(volume: Volume, params: NormalizationParameters) -> Volume:
    """``(raw - offset) / scale``, clipped as recorded; float32 on the same grid.

    >>> import numpy as np
    >>> v = Volume(np.full((2, 2, 2), 55.0))
    >>> float(normalize(v, NormalizationParameters("percentile", 10.0, 90.0)).array[0, 0, 0])
    0.5
    """
    array = (volume.array.astype(np.float64) - params.offset) / params.scale
    if params.clip_low is not None or params.clip_high is not None:
        array = np.clip(array, params.clip_low, params.clip_high)
    return volume.with_array(array.astype(np.float32))


def denormalize(volume: Volume, params: NormalizationParameters) -> Volume:
    """Back to the raw units: ``normalized * scale + offset`` (float32); exact up to float rounding
    for voxels that were not clipped.

    >>> import numpy as np
    >>> v = Volume(np.full((2, 2, 2), 0.5, np.float32))
    >>> float(denormalize(v, NormalizationParameters("percentile", 10.0, 90.0)).array[0, 0, 0])
    55.0
    """
    array = volume.array.astype(np.float64) * params.scale + params.offset
    return volume.with_array(array.astype(np.float32))


def evaluation_scale(true_volume: np.ndarray | Volume, mask: np.ndarray | Volume) -> float:
    """The project's evaluation units (EVALUATION.md): the 99.5th percentile of the truth inside the
    brain mask. Truth and prediction are both divided by it, then clipped to [0, 1].

    >>> import numpy as np
    >>> truth = np.arange(1, 1001, dtype=float).reshape(10, 10, 10)
    >>> round(evaluation_scale(truth, truth > 0), 3)
    995.005
    """
    truth = np.asarray(getattr(true_volume, "array", true_volume))
    inside = np.asarray(getattr(mask, "array", mask)).astype(bool)
    if inside.shape != truth.shape:
        raise ValueError(f"mask shape {inside.shape} differs from the volume's {truth.shape}")
    if not inside.any():
        raise ValueError("the brain mask is empty: no voxel to compute the evaluation scale on")
    scale = float(np.percentile(truth[inside].astype(np.float64), 99.5))
    if not scale > 0:
        raise ValueError(f"the truth's 99.5th percentile inside the mask is {scale}; it must be positive")
    return scale


def _mask_array(mask: Volume | np.ndarray, volume: Volume) -> np.ndarray:
    array = np.asarray(getattr(mask, "array", mask)).astype(bool)
    if array.shape != volume.shape:
        raise ValueError(f"mask shape {array.shape} differs from the volume's {volume.shape}")
    if isinstance(mask, Volume) and not mask.same_grid(volume):
        raise ValueError("the mask lies on another grid than the volume; resample it first")
    return array
