"""A preprocessed folder as the pieces training and evaluation need: contrasts, subjects, splits,
and subjects in memory for scoring (normalized stack, mask, tumour mask where the subject has one,
the way back to original units)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.contrasts import ContrastSet, canonical_contrast, channel_order
from ..core.errors import InputError
from ..core.io import read_volume
from ..core.volume import Volume
from .manifest import read_manifest


def ok_records(manifest: dict) -> list[dict]:
    return [r for r in manifest["subjects"] if r.get("status") == "ok"]


def contrasts_of(manifest: dict, requested: Sequence[str] | None = None) -> ContrastSet:
    """The contrast set: the requested one, else the contrasts every preprocessed subject has."""
    records = ok_records(manifest)
    if not records:
        raise InputError("the preprocessed folder holds no successfully preprocessed subject.")
    reference = records[0]["reference"]
    if requested:
        names = tuple(canonical_contrast(c) for c in requested)
    else:
        common = set.intersection(*(set(r["outputs"]) for r in records))
        names = tuple(channel_order(common))
    if len(names) < 2:
        raise InputError(f"training needs at least two contrasts shared by all subjects; found {', '.join(names) or 'none'}.")
    return ContrastSet(names, reference if reference in names else None)


def complete_subjects(manifest: dict, contrasts: ContrastSet) -> list[str]:
    return sorted(r["subject"] for r in ok_records(manifest) if set(contrasts.names) <= set(r["outputs"]))


@dataclass
class LoadedSubject:
    """One preprocessed subject in memory, ready for evaluation.EvalSubject."""

    name: str
    stack: np.ndarray  # (C, z, y, x) normalized
    mask: np.ndarray  # (z, y, x) bool
    frame: Volume  # the reference grid (geometry of every channel)
    normalization: list  # NormalizationParameters per channel
    tumour: np.ndarray | None = None  # (z, y, x) bool from the subject's `_seg` file; None without one

    def denormalize(self, channel: int, array: np.ndarray) -> np.ndarray:
        params = self.normalization[channel]
        return array.astype(np.float64) * params.scale + params.offset


def load_subject(preprocessed: Path, record: dict, contrasts: ContrastSet) -> LoadedSubject:
    from .normalization import NormalizationParameters, normalize

    params, channels = [], []
    frame = None
    for name in contrasts.names:
        volume = read_volume(Path(preprocessed) / record["outputs"][name], contrast=name)
        p = NormalizationParameters.from_dict(record["steps"]["normalization"][name])
        channels.append(normalize(volume, p).array)
        params.append(p)
        frame = frame or volume
    mask = read_volume(Path(preprocessed) / record["mask"]).array > 0
    tumour = read_volume(Path(preprocessed) / record["tumour_mask"]).array > 0 if record.get("tumour_mask") else None
    if tumour is not None and tumour.shape != mask.shape:
        raise InputError(f"{preprocessed}: {record['tumour_mask']} has shape {tumour.shape}, the subject's grid is "
                         f"{mask.shape}; preprocess the subject again.")
    return LoadedSubject(record["subject"], np.stack(channels).astype(np.float32), mask,
                         frame.with_array(np.zeros(frame.shape, np.float32)), params, tumour)


def load_subjects(preprocessed: Path, names: Sequence[str], contrasts: ContrastSet) -> list[LoadedSubject]:
    manifest = read_manifest(preprocessed)
    records = {r["subject"]: r for r in ok_records(manifest)}
    missing = [n for n in names if n not in records]
    if missing:
        raise InputError(f"{preprocessed}: subject(s) {', '.join(missing)} are not preprocessed there.")
    return [load_subject(preprocessed, records[n], contrasts) for n in names]
