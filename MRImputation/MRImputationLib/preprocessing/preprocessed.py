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


def present_contrasts(record: dict) -> list[str]:
    """The contrasts a preprocessed subject has (written and normalized), in channel order."""
    normalized = record.get("steps", {}).get("normalization", {})
    return channel_order([c for c in record.get("outputs", {}) if c in normalized])


def contrast_counts(manifest: dict) -> dict[str, int]:
    """How many preprocessed subjects have each contrast, in channel order."""
    counts: dict[str, int] = {}
    for record in ok_records(manifest):
        for name in present_contrasts(record):
            counts[name] = counts.get(name, 0) + 1
    return {name: counts[name] for name in channel_order(counts)}


def contrasts_of(manifest: dict, requested: Sequence[str] | None = None) -> ContrastSet:
    """The contrast set: the requested one, else every contrast some subject has (never shrunk to the ones all
    subjects share: a subject lacking one still teaches the model with the others). InputError for a declared
    contrast no subject has."""
    records = ok_records(manifest)
    if not records:
        raise InputError("the preprocessed folder holds no successfully preprocessed subject.")
    counts = contrast_counts(manifest)
    if requested:
        names = tuple(canonical_contrast(c) for c in requested)
        absent = [n for n in names if n not in counts]
        if absent:
            raise InputError(f"no subject has {', '.join(absent)} (declared with --contrasts); the subjects have "
                             f"{', '.join(f'{n} ({k})' for n, k in counts.items())}. Declare contrasts some subject has.")
    else:
        names = tuple(counts)
    if len(names) < 2:
        raise InputError(f"training needs at least two contrasts; the subjects have {', '.join(names) or 'none'}.")
    references = [r["reference"] for r in records if r.get("reference") in names]
    return ContrastSet(names, references[0] if references else None)


def usable_subjects(manifest: dict, contrasts: ContrastSet, least: int = 2,
                    refuse_short: bool = True) -> dict[str, tuple[str, ...]]:
    """Subject -> the contrasts of `contrasts` it has, for every preprocessed subject with at least `least`;
    InputError naming the subjects with fewer (and what they have), unless not `refuse_short` (then they
    are left out)."""
    found, short = {}, {}
    for record in ok_records(manifest):
        have = tuple(n for n in contrasts.names if n in present_contrasts(record))
        (found if len(have) >= least else short)[record["subject"]] = have
    if short and refuse_short:
        listed = "; ".join(f"{s} has {', '.join(h) or 'none'}" for s, h in sorted(short.items())[:10])
        more = f" (and {len(short) - 10} more)" if len(short) > 10 else ""
        raise InputError(f"{len(short)} subject(s) have fewer than {least} of the contrasts {', '.join(contrasts.names)}: "
                         f"{listed}{more}. Remove them from the data folder, or declare contrasts they have "
                         "with --contrasts.")
    return dict(sorted(found.items()))


@dataclass
class LoadedSubject:
    """One preprocessed subject in memory, ready for evaluation.EvalSubject."""

    name: str
    stack: np.ndarray  # (C, z, y, x) normalized
    mask: np.ndarray  # (z, y, x) bool
    frame: Volume  # the reference grid (geometry of every channel)
    normalization: list  # NormalizationParameters per channel (None where the subject lacks the contrast)
    tumour: np.ndarray | None = None  # (z, y, x) bool from the subject's `_seg` file; None without one
    present: tuple[bool, ...] | None = None  # per channel: does the subject have it (None: every one)

    def denormalize(self, channel: int, array: np.ndarray) -> np.ndarray:
        params = self.normalization[channel]
        return array.astype(np.float64) * params.scale + params.offset


def load_subject(preprocessed: Path, record: dict, contrasts: ContrastSet) -> LoadedSubject:
    from .normalization import NormalizationParameters, normalize

    params, channels = [], []
    frame = None
    have = present_contrasts(record)
    for name in contrasts.names:
        if name not in have:
            params.append(None)
            channels.append(None)
            continue
        volume = read_volume(Path(preprocessed) / record["outputs"][name], contrast=name)
        p = NormalizationParameters.from_dict(record["steps"]["normalization"][name])
        channels.append(normalize(volume, p).array)
        params.append(p)
        frame = frame or volume
    if frame is None:
        raise InputError(f"{preprocessed}: subject {record['subject']} has none of {', '.join(contrasts.names)}.")
    channels = [np.zeros(frame.shape, np.float32) if c is None else c for c in channels]  # absent: zeros, never read
    mask = read_volume(Path(preprocessed) / record["mask"]).array > 0
    tumour = read_volume(Path(preprocessed) / record["tumour_mask"]).array > 0 if record.get("tumour_mask") else None
    if tumour is not None and tumour.shape != mask.shape:
        raise InputError(f"{preprocessed}: {record['tumour_mask']} has shape {tumour.shape}, the subject's grid is "
                         f"{mask.shape}; preprocess the subject again.")
    present = tuple(p is not None for p in params)
    return LoadedSubject(record["subject"], np.stack(channels).astype(np.float32), mask,
                         frame.with_array(np.zeros(frame.shape, np.float32)), params, tumour,
                         None if all(present) else present)


def load_subjects(preprocessed: Path, names: Sequence[str], contrasts: ContrastSet) -> list[LoadedSubject]:
    manifest = read_manifest(preprocessed)
    records = {r["subject"]: r for r in ok_records(manifest)}
    missing = [n for n in names if n not in records]
    if missing:
        raise InputError(f"{preprocessed}: subject(s) {', '.join(missing)} are not preprocessed there.")
    return [load_subject(preprocessed, records[n], contrasts) for n in names]
