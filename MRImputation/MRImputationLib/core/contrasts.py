"""Contrast sets, scenarios, and recognition of contrast names in file names.

A scenario says which contrasts are available, as a bit string in channel order with
1 = available (MM-GAN's convention): for (T1, T2, PD), "011" means T1 is missing.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .errors import InputError

# Canonical names, and the spellings seen in the usual data sets (lower case).
CONTRAST_ALIASES: dict[str, tuple[str, ...]] = {
    "T1": ("t1", "t1n", "t1w", "mprage", "t1native"),
    "T1c": ("t1c", "t1ce", "t1gd", "t1post", "t1contrast", "t1wce"),
    "T2": ("t2", "t2w"),
    "FLAIR": ("flair", "fla", "t2f", "t2flair", "t2fla"),
    "PD": ("pd", "pdw"),
}
# File-name tokens of files that are not contrasts (segmentations, masks, our own side outputs).
NON_CONTRAST_TOKENS = ("seg", "mask", "label", "labels", "brainmask", "bias", "uncertainty", "error")

# Channel order when the contrasts come from the data (IXI gives T1, T2, PD; BraTS T1, T1c, T2, FLAIR),
# also the tie-break when choosing a reference grid among equally fine ones.
CHANNEL_ORDER: tuple[str, ...] = ("T1", "T1c", "T2", "PD", "FLAIR")
REFERENCE_PRIORITY = CHANNEL_ORDER

_ALIAS_TO_NAME = {alias: name for name, aliases in CONTRAST_ALIASES.items() for alias in aliases}
_TOKEN_SPLIT = re.compile(r"[-_.\s]+")


def channel_order(names: Iterable[str]) -> list[str]:
    """Contrasts in the channel order models use (T1, T1c, T2, PD, FLAIR, then the rest by name).

    >>> channel_order({"PD", "T1", "T2"})
    ['T1', 'T2', 'PD']
    """
    return sorted(set(names), key=lambda c: (CHANNEL_ORDER.index(c) if c in CHANNEL_ORDER else len(CHANNEL_ORDER), c))


def is_contrast_token(token: str) -> bool:
    """Whether a file-name token spells a contrast (`t1ce`, `FLAIR`, `t2w` ...).

    >>> is_contrast_token("t1ce"), is_contrast_token("brain")
    (True, False)
    """
    return token.lower() in _ALIAS_TO_NAME


def canonical_contrast(name: str) -> str:
    """The canonical spelling of a contrast name ("t1ce" -> "T1c"); unknown names are returned stripped."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    return _ALIAS_TO_NAME.get(key, name.strip())


def by_canonical_name(named: dict, option: str) -> dict:
    """`named` (contrast name as given -> value) keyed by canonical names; InputError when two names given
    are one contrast (`T1=a` and `t1n=b`), which would silently drop one of them.

    >>> by_canonical_name({"t1n": "a.nii.gz", "T2": "b.nii.gz"}, "--input")
    {'T1': 'a.nii.gz', 'T2': 'b.nii.gz'}
    >>> by_canonical_name({"T1": "a.nii.gz", "t1n": "b.nii.gz"}, "--input")
    Traceback (most recent call last):
    ...
    MRImputationLib.core.errors.InputError: --input: T1 is given twice, as T1=a.nii.gz and t1n=b.nii.gz (t1n is ...
    """
    result: dict = {}
    spelled: dict = {}
    for name, value in named.items():
        key = canonical_contrast(str(name))
        if key in result:
            raise InputError(f"{option}: {key} is given twice, as {spelled[key]}={result[key]} and {name}={value} "
                             f"({name if name != key else spelled[key]} is another name for {key}). Give each "
                             "contrast once.")
        result[key], spelled[key] = value, name
    return result


@dataclass(frozen=True)
class Scenario:
    """Which contrasts are available, as a bit string in channel order (1 = available).

    >>> s = Scenario("011")
    >>> s.available(IXI), s.missing(IXI)
    (('T2', 'PD'), ('T1',))
    >>> s.describe(IXI)
    'given T2, PD -> synthesizing T1'
    """

    bits: str

    def __post_init__(self) -> None:
        if not self.bits or set(self.bits) - {"0", "1"}:
            raise InputError(f"scenario {self.bits!r}: write it as a bit string such as '011' (1 = available).")
        if "1" not in self.bits:
            raise InputError(f"scenario {self.bits!r}: at least one contrast must be available.")
        if "0" not in self.bits:
            raise InputError(f"scenario {self.bits!r}: every contrast is available, so nothing is missing to synthesize.")

    @property
    def mask(self) -> tuple[bool, ...]:
        return tuple(b == "1" for b in self.bits)

    @property
    def n_available(self) -> int:
        return self.bits.count("1")

    @property
    def n_missing(self) -> int:
        return self.bits.count("0")

    def available(self, contrasts: "ContrastSet") -> tuple[str, ...]:
        return tuple(n for n, b in zip(contrasts.names, self.bits) if b == "1")

    def missing(self, contrasts: "ContrastSet") -> tuple[str, ...]:
        return tuple(n for n, b in zip(contrasts.names, self.bits) if b == "0")

    def describe(self, contrasts: "ContrastSet") -> str:
        return f"given {', '.join(self.available(contrasts))} -> synthesizing {', '.join(self.missing(contrasts))}"

    def label(self, contrasts: "ContrastSet") -> str:
        """'T2,PD→T1': the given contrasts, an arrow, the missing ones (tables, model cards)."""
        return f"{','.join(self.available(contrasts))}→{','.join(self.missing(contrasts))}"

    def __str__(self) -> str:
        return self.bits


@dataclass(frozen=True)
class ContrastSet:
    """An ordered set of contrast names (the model's channels) and its reference contrast.

    >>> IXI.names, IXI.reference, len(IXI.scenarios())
    (('T1', 'T2', 'PD'), 'PD', 6)
    >>> [s.bits for s in IXI.scenarios()]
    ['110', '101', '011', '100', '010', '001']
    """

    names: tuple[str, ...]
    reference: str | None = None

    def __post_init__(self) -> None:
        names = tuple(canonical_contrast(n) for n in self.names)
        if len(names) < 2:
            raise InputError(f"contrast set {self.names}: needs at least two contrasts.")
        if len(set(names)) != len(names):
            raise InputError(f"contrast set {self.names}: names repeat after canonicalisation ({names}).")
        object.__setattr__(self, "names", names)
        reference = canonical_contrast(self.reference) if self.reference else names[0]
        if reference not in names:
            raise InputError(f"reference contrast {self.reference!r} is not one of {', '.join(names)}.")
        object.__setattr__(self, "reference", reference)

    @classmethod
    def parse(cls, text: str, reference: str | None = None) -> "ContrastSet":
        """From a comma-separated list such as "T1,T2,PD"."""
        return cls(tuple(p for p in (s.strip() for s in text.split(",")) if p), reference)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        key = canonical_contrast(name)
        if key not in self.names:
            raise InputError(f"contrast {name!r} is not one of this set's contrasts ({', '.join(self.names)}).")
        return self.names.index(key)

    def scenarios(self) -> list[Scenario]:
        """All 2^N − 2 scenarios, easy → hard: fewest missing first, then by bit string (descending)."""
        n = len(self.names)
        bits = ["".join(p) for p in itertools.product("10", repeat=n)]
        valid = [b for b in bits if "0" in b and "1" in b]
        return [Scenario(b) for b in sorted(valid, key=lambda b: (b.count("0"), [-int(c) for c in b]))]

    def scenario_for(self, available: Iterable[str]) -> Scenario:
        """The scenario in which exactly `available` are given."""
        given = {canonical_contrast(a) for a in available}
        unknown = given - set(self.names)
        if unknown:
            raise InputError(
                f"contrast(s) {', '.join(sorted(unknown))} not known to this model; it uses {', '.join(self.names)}."
            )
        return Scenario("".join("1" if n in given else "0" for n in self.names))

    def to_dict(self) -> dict:
        return {"names": list(self.names), "reference": self.reference}

    @classmethod
    def from_dict(cls, data: dict) -> "ContrastSet":
        return cls(tuple(data["names"]), data.get("reference"))


IXI = ContrastSet(("T1", "T2", "PD"), reference="PD")
BRATS = ContrastSet(("T1", "T1c", "T2", "FLAIR"), reference="T1")
PRESETS = {"ixi": IXI, "brats": BRATS}


def contrast_from_filename(path: str | os.PathLike, known: Sequence[str] | None = None) -> str | None:
    """The contrast a file name names, or None for non-contrast files (segmentations, masks).

    Understands IXI (`IXI002-Guys-0828-T1`), BraTS 2021 (`_t1ce`), BraTS 2023 (`-t2f`),
    BrainLesion (`_fla`) and plain names (`sub-01_PD`). Raises InputError when no contrast or
    more than one is named.

    >>> contrast_from_filename("IXI002-Guys-0828-T1.nii.gz"), contrast_from_filename("BraTS-GLI-00001-000-t2f.nii.gz")
    ('T1', 'FLAIR')
    >>> contrast_from_filename("BraTS2021_00000_t1ce.nii.gz"), contrast_from_filename("TCGA-DU-7294_fla.nii.gz")
    ('T1c', 'FLAIR')
    >>> contrast_from_filename("BraTS2021_00000_seg.nii.gz") is None
    True
    """
    name = Path(path).name
    named = contrasts_in_name(name)
    if named is None:
        return None
    allowed = {canonical_contrast(k) for k in known} if known else None
    found = [c for c in named if allowed is None or c in allowed]
    if not found:
        expected = ", ".join(sorted(allowed)) if allowed else ", ".join(CONTRAST_ALIASES)
        raise InputError(
            f"{name}: no contrast name recognised (looked for {expected} in the usual spellings, e.g. "
            "'_t1', '-t1n', '_t1ce', '-T2', '_flair', '-t2f', '_PD'). Rename the file or give the contrast explicitly (NAME=PATH)."
        )
    if len(found) > 1:
        raise InputError(
            f"{name}: ambiguous, it names several contrasts ({', '.join(found)}). "
            "Rename the file or give the contrast explicitly (NAME=PATH)."
        )
    return found[0]


def contrasts_in_name(name: str) -> list[str] | None:
    """Every contrast a file name names, in order (none: []), or None for a non-contrast file (`_seg`, `_mask`).

    >>> contrasts_in_name("s1_T1_T2.nii.gz"), contrasts_in_name("s1_seg.nii.gz"), contrasts_in_name("scan.nii")
    (['T1', 'T2'], None, [])
    """
    from .io import strip_volume_suffix

    tokens = [t.lower() for t in _TOKEN_SPLIT.split(strip_volume_suffix(Path(name).name)) if t]
    if any(t in NON_CONTRAST_TOKENS for t in tokens):
        return None
    found: list[str] = []
    for token in tokens:
        contrast = _ALIAS_TO_NAME.get(token)
        if contrast and contrast not in found:
            found.append(contrast)
    return found


def contrasts_in_folder(folder: str | os.PathLike, known: Sequence[str] | None = None) -> dict[str, Path]:
    """Map contrast name -> file for the volume files of one subject's folder.

    Files that name a contrast not in `known`, or that are segmentations/masks, are skipped; two files of
    the same contrast, or a file whose name names no contrast or several, are an error listing what was found.
    """
    from .io import is_volume_file

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_volume_file(p))
    found: dict[str, list[Path]] = {}
    problems: list[str] = []
    for file in files:
        try:
            contrast = contrast_from_filename(file, known=None)
        except InputError as error:
            problems.append(str(error))
            continue
        if contrast is None:
            continue
        if known and contrast not in {canonical_contrast(k) for k in known}:
            continue
        found.setdefault(contrast, []).append(file)
    duplicates = {c: ps for c, ps in found.items() if len(ps) > 1}
    listing = "; ".join(f"{c}: {', '.join(p.name for p in ps)}" for c, ps in sorted(found.items()))
    if duplicates:
        dup = "; ".join(f"{c} in {', '.join(p.name for p in ps)}" for c, ps in duplicates.items())
        raise InputError(f"{folder}: several files for one contrast ({dup}). Found: {listing}. Keep one file per contrast.")
    if problems:
        what = f"Found: {listing}." if found else "No file with a recognisable contrast name."
        raise InputError(f"{folder}: {' '.join(problems)} {what}")
    return {c: ps[0] for c, ps in found.items()}
