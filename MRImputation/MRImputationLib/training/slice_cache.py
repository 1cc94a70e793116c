"""Preprocessed subjects as ready-to-train slices, cached as .npy files that epochs memory-map.

`build_cache` turns a `mrimpute preprocess` output folder into, per subject,
`<subject>.npy` (Z', C, S, S) float32 normalized slices in the contrast set's channel order and
`<subject>_mask.npy` (Z', S, S) uint8 brain mask slices, plus `index.json` saying how each was
made (slice geometry, normalization, grid) so predictions can be put back on the reference grid
and into the input's units. A subject is rebuilt only when its manifest record, the contrasts or
the cache settings changed. Every file is written atomically and the index last, so an
interrupted build is simply resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core.atomic import atomic_file, write_text
from ..core.contrasts import ContrastSet
from ..core.errors import InputError
from ..models.slicing import SliceGeometry, SlicingConfig, context_offsets, mask_to_slices, plan_slices, to_slices

CACHE_FORMAT = "mrimputation-slices/1"
INDEX_NAME = "index.json"


def _image_file(subject: str) -> str:
    return f"{subject}.npy"


def _mask_file(subject: str) -> str:
    return f"{subject}_mask.npy"


def _fingerprint(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def read_cache_index(cache: str | os.PathLike) -> dict:
    """The index of a slice cache, with a clear error when it is missing or foreign."""
    path = Path(cache) / INDEX_NAME
    if not path.is_file():
        raise InputError(
            f"{cache}: no {INDEX_NAME}; build the slice cache first (it is made from a preprocessed folder)."
        )
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: damaged ({error}); delete the cache folder and build it again.") from None
    if index.get("format") != CACHE_FORMAT:
        raise InputError(f"{path}: format {index.get('format')!r} is not {CACHE_FORMAT!r}; build the cache again.")
    return index


def _check_name(subject: str) -> None:
    if not subject or subject.startswith(".") or any(c in subject for c in "/\\\0") or subject == INDEX_NAME:
        raise InputError(f"subject name {subject!r} cannot be used as a cache file name; rename the subject.")


def _wanted_records(manifest: dict, contrasts: ContrastSet, subjects: Sequence[str] | None):
    records = {r["subject"]: r for r in manifest.get("subjects", [])}
    usable, skipped = {}, {}
    for name, record in records.items():
        if record.get("status") != "ok":
            skipped[name] = f"preprocessing failed: {record.get('error', 'unknown error')}"
            continue
        if not _present(record, contrasts):  # lacking some is fine: a subject teaches with what it has
            skipped[name] = f"has none of {', '.join(contrasts.names)}"
            continue
        usable[name] = record
    if subjects is None:
        chosen = sorted(usable)
    else:
        chosen = list(dict.fromkeys(subjects))
        problems = [f"{s} ({skipped[s]})" if s in skipped else f"{s} (not in the manifest)"
                    for s in chosen if s not in usable]
        if problems:
            raise InputError(
                f"cannot cache subject(s) {'; '.join(problems)}; they need a successful preprocessing with "
                f"some of {', '.join(contrasts.names)}. Preprocess them again or leave them out of the split."
            )
        skipped = {}
    if not chosen:
        raise InputError(
            f"no preprocessed subject has any of {', '.join(contrasts.names)}"
            + (f" (skipped: {'; '.join(f'{k}: {v}' for k, v in sorted(skipped.items()))})" if skipped else "")
            + ". Check the contrasts or preprocess the data again."
        )
    for name in chosen:
        _check_name(name)
    return {name: usable[name] for name in chosen}, skipped


def _present(record: dict, contrasts: ContrastSet) -> list[str]:
    """The contrasts of `contrasts` the subject has, written and normalized."""
    outputs, normalized = record.get("outputs", {}), record.get("steps", {}).get("normalization", {})
    return [c for c in contrasts.names if c in outputs and c in normalized]


def _entry_valid(cache: Path, entry: dict, fingerprint: str, config: SlicingConfig, n_channels: int) -> bool:
    if entry.get("source") != fingerprint:
        return False
    try:
        images = np.load(cache / entry["files"]["image"], mmap_mode="r")
        masks = np.load(cache / entry["files"]["mask"], mmap_mode="r")
    except (OSError, ValueError, KeyError):
        return False
    n = entry.get("slices")
    return images.shape == (n, n_channels, config.size, config.size) and masks.shape == (n, config.size, config.size)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)


def _cache_subject(preprocessed: Path, record: dict, contrasts: ContrastSet, config: SlicingConfig, cache: Path) -> dict:
    from ..core.io import read_volume
    from ..preprocessing.normalization import NormalizationParameters, normalize

    name = record["subject"]
    mask = read_volume(preprocessed / record["mask"])
    channels, normalization, reference = [], {}, None
    present = _present(record, contrasts)
    for contrast in contrasts.names:
        if contrast not in present:
            channels.append(None)
            continue
        volume = read_volume(preprocessed / record["outputs"][contrast], contrast=contrast)
        if not volume.same_grid(mask):
            raise InputError(
                f"{preprocessed / record['outputs'][contrast]}: not on the grid of the brain mask "
                f"{record['mask']}; preprocess subject {name} again."
            )
        params = NormalizationParameters.from_dict(record["steps"]["normalization"][contrast])
        channels.append(normalize(volume, params).array)
        normalization[contrast] = params.to_dict()
        reference = reference or volume
    geometry = plan_slices(reference, mask.array, config.size, config.crop, config.skip_empty, config.margin_mm)
    # A contrast the subject lacks is a channel of zeros, marked absent ("present"): training never learns from it.
    channels = [np.zeros(reference.shape, np.float32) if c is None else c for c in channels]
    images = to_slices(np.stack(channels), geometry)
    masks = mask_to_slices(mask.array, geometry)
    _save_npy(cache / _image_file(name), images)
    _save_npy(cache / _mask_file(name), masks)
    return {
        "slices": int(images.shape[0]),
        "geometry": geometry.to_dict(),
        "normalization": normalization,
        "grid": {"spacing": list(mask.spacing), "origin": list(mask.origin), "direction": list(mask.direction)},
        "files": {"image": _image_file(name), "mask": _mask_file(name)},
        "present": present,
        "source": _fingerprint(record),
    }


def _reusable_entries(cache: Path, contrasts: ContrastSet, config: SlicingConfig) -> dict:
    """The earlier index's subject entries if it was built with the same settings; else it and its files go."""
    if not (cache / INDEX_NAME).is_file():
        return {}
    try:
        previous = read_cache_index(cache)
    except InputError:
        previous = {}
    if previous.get("contrasts") == contrasts.to_dict() and previous.get("config") == config.to_dict():
        return previous.get("subjects", {})
    # other settings: nothing can be reused
    (cache / INDEX_NAME).unlink()
    for entry in previous.get("subjects", {}).values():
        for file in entry.get("files", {}).values():
            (cache / file).unlink(missing_ok=True)
    return {}


def _write_index(cache: Path, preprocessed: Path, contrasts: ContrastSet, config: SlicingConfig, entries: dict,
                 skipped: dict) -> None:
    """index.json, written atomically: the settings and every cached subject's entry."""
    index = {
        "format": CACHE_FORMAT,
        "contrasts": contrasts.to_dict(),
        "config": config.to_dict(),
        "preprocessed": str(preprocessed.resolve()),
        "subjects": {name: entries[name] for name in sorted(entries)},
        "skipped": skipped,
    }
    write_text(cache / INDEX_NAME, json.dumps(index, indent=1))


def build_cache(
    preprocessed: str | os.PathLike,
    contrasts: ContrastSet,
    cache: str | os.PathLike,
    config: SlicingConfig | None = None,
    subjects: Sequence[str] | None = None,
    on_progress: Callable[[float, str], None] | None = None,
) -> Path:
    """Cache the slices of `subjects` (default: every successfully preprocessed subject with some of
    `contrasts`; a contrast a subject lacks is a zero channel its entry marks absent); reuse what an
    earlier build made with the same settings. Returns the cache folder.
    """
    from ..preprocessing.manifest import read_manifest

    preprocessed, cache = Path(preprocessed), Path(cache)
    config = config or SlicingConfig()
    report = on_progress or (lambda fraction, message: None)
    manifest = read_manifest(preprocessed)
    records, skipped = _wanted_records(manifest, contrasts, subjects)
    cache.mkdir(parents=True, exist_ok=True)

    old = _reusable_entries(cache, contrasts, config)

    # Subjects cached earlier with the same settings stay in the index, even if not asked for now.
    entries: dict = {name: entry for name, entry in old.items()
                     if name not in records and (cache / entry["files"]["image"]).is_file()}
    changed = set(entries) != set(old) - set(records)
    for i, (name, record) in enumerate(records.items()):
        entry = old.get(name)
        if entry is not None and _entry_valid(cache, entry, _fingerprint(record), config, len(contrasts)):
            entries[name] = entry
            report((i + 1) / len(records), f"{name}: cached already")
            continue
        report(i / len(records), f"{name}: slicing")
        entries[name] = _cache_subject(preprocessed, record, contrasts, config, cache)
        changed = True
        # after every subject, so an interrupted build resumes where it stopped
        _write_index(cache, preprocessed, contrasts, config, entries, skipped)
        report((i + 1) / len(records), f"{name}: {entries[name]['slices']} slices")
    if changed or not (cache / INDEX_NAME).is_file():
        _write_index(cache, preprocessed, contrasts, config, entries, skipped)
    return cache


def load_subject_slices(cache: str | os.PathLike, subject: str) -> tuple[np.ndarray, SliceGeometry]:
    """One subject's (Z', C, S, S) slices (memory-mapped, read-only) and their geometry."""
    cache = Path(cache)
    entry = _subject_entry(read_cache_index(cache), cache, subject)
    return np.load(cache / entry["files"]["image"], mmap_mode="r"), SliceGeometry.from_dict(entry["geometry"])


def load_subject_mask(cache: str | os.PathLike, subject: str) -> np.ndarray:
    """One subject's (Z', S, S) uint8 mask slices (memory-mapped, read-only)."""
    cache = Path(cache)
    entry = _subject_entry(read_cache_index(cache), cache, subject)
    return np.load(cache / entry["files"]["mask"], mmap_mode="r")


def _subject_entry(index: dict, cache: Path, subject: str) -> dict:
    entry = index["subjects"].get(subject)
    if entry is None:
        known = ", ".join(sorted(index["subjects"])[:10])
        raise InputError(f"{cache}: subject {subject!r} is not in the slice cache (it holds {known}...). "
                         "Build the cache for it first.")
    return entry


try:  # a plain base class when torch is absent, so the module imports without it
    from torch.utils.data import Dataset as _Dataset
except ImportError:  # pragma: no cover - torch is a dependency; only the Slicer module loads without it
    _Dataset = object


class SliceDataset(_Dataset):
    """The cached slices of `subjects`, in subject then slice order.

    Item i is (image (C, S, S) float32, mask (S, S) uint8); with `context` k > 0 (a 2.5-D network) the
    image is (C·(1 + 2k), S, S): the slice, then its neighbours in the subject's cached slices at
    `slicing.context_offsets(k)`, zeros beyond its first or last (as `slicing.with_context` at inference).

    Files are memory-mapped on first access in each process (DataLoader workers each open their
    own). With `augment_flip`, an item is mirrored left-right with probability one half, drawn
    from torch's global generator (reproducible under `torch.manual_seed` and seeded workers).
    """

    def __init__(self, cache: str | os.PathLike, subjects: Sequence[str], augment_flip: bool = False,
                 context: int = 0) -> None:
        self.cache = Path(cache)
        index = read_cache_index(self.cache)
        self.contrasts = ContrastSet.from_dict(index["contrasts"])
        self.config = SlicingConfig.from_dict(index["config"])
        self.subjects = list(subjects)
        if not self.subjects:
            raise InputError("the slice dataset needs at least one subject.")
        self.entries = [_subject_entry(index, self.cache, s) for s in self.subjects]
        self.augment_flip = bool(augment_flip)
        self.context = int(context)
        # Per subject, which channels it has (caches made before incomplete subjects: every one).
        self.present = [tuple(c in e.get("present", self.contrasts.names) for c in self.contrasts.names)
                        for e in self.entries]
        counts = np.array([e["slices"] for e in self.entries], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self._arrays: list | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _position(self, index: int) -> tuple[int, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"slice {index} out of range for {len(self)} slices")
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return k, int(index - self.offsets[k])

    def locate(self, index: int) -> tuple[str, int]:
        """(subject, slice within its cached slices) of item `index`."""
        k, position = self._position(int(index))
        return self.subjects[k], position

    def presence(self, index: int) -> tuple[bool, ...]:
        """Per channel, whether the subject of item `index` has that contrast."""
        return self.present[self._position(int(index))[0]]

    def _open(self) -> list:
        if self._arrays is None:
            self._arrays = [
                (np.load(self.cache / e["files"]["image"], mmap_mode="r"),
                 np.load(self.cache / e["files"]["mask"], mmap_mode="r"))
                for e in self.entries
            ]
        return self._arrays

    def __getitem__(self, index: int):
        import torch

        k, position = self._position(int(index))
        images, masks = self._open()[k]
        image = torch.from_numpy(np.array(images[position], dtype=np.float32))
        if self.context:
            neighbours = [images[position + d] if 0 <= position + d < len(images) else np.zeros(images.shape[1:])
                          for d in context_offsets(self.context)]
            image = torch.cat([image, torch.from_numpy(np.concatenate(neighbours).astype(np.float32))])
        mask = torch.from_numpy(np.array(masks[position], dtype=np.uint8))
        if self.augment_flip and bool(torch.rand(()) < 0.5):
            image, mask = image.flip(-1), mask.flip(-1)
        return image, mask

    def subject_stacks(self):
        """Per subject, its cached slices as a (contrasts, slices, H, W) stack, the (slices, H, W) brain mask
        and which contrasts it has: the layout `LinearImputer.fit` reads."""
        for (images, masks), present in zip(self._open(), self.present):
            yield np.moveaxis(images, 1, 0), masks, present

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = None  # memory maps are reopened in each worker, never pickled
        return state
