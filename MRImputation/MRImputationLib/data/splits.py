"""A fixed subject-wise split (train / validation / test), saved as a file before training.

Subjects are never split by slice (EVALUATION.md). The order comes from a hash of the seed and
the subject's name, not from a random generator, so a split is the same on every Python and
NumPy version, does not depend on the order the subjects were listed in, and adding subjects
later does not shuffle the others.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..core.atomic import write_text
from ..core.errors import InputError
from ..core.options import read_json_file

SPLIT_FORMAT = "mrimputation-split/1"
PARTS = ("train", "val", "test")


@dataclass
class Split:
    """Which subjects train, validate and test a model.

    >>> split = make_split([f"s{i}" for i in range(10)], seed=0)
    >>> len(split.train), len(split.val), len(split.test)
    (7, 1, 2)
    >>> split.of(split.test[0])
    'test'
    """

    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    seed: int = 0

    def __post_init__(self) -> None:
        self.train, self.val, self.test = list(self.train), list(self.val), list(self.test)
        seen: dict[str, str] = {}
        for part in PARTS:
            for subject in getattr(self, part):
                if subject in seen:
                    raise InputError(
                        f"split: subject {subject!r} is in both {seen[subject]} and {part}; "
                        "a subject belongs to one part only. Make the split again."
                    )
                seen[subject] = part
        self._part = seen

    @property
    def subjects(self) -> list[str]:
        """Every subject of the split, train first."""
        return self.train + self.val + self.test

    def of(self, subject: str) -> str:
        """"train", "val" or "test"; KeyError for a subject that is not in the split."""
        try:
            return self._part[subject]
        except KeyError:
            raise KeyError(f"subject {subject!r} is not in this split") from None

    def to_dict(self) -> dict:
        return {"format": SPLIT_FORMAT, "seed": self.seed, "train": list(self.train),
                "val": list(self.val), "test": list(self.test)}

    @classmethod
    def from_dict(cls, data: dict) -> "Split":
        if data.get("format", SPLIT_FORMAT) != SPLIT_FORMAT:
            raise InputError(f"split format {data.get('format')!r} is not {SPLIT_FORMAT!r}; make the split again.")
        return cls(train=list(data.get("train", [])), val=list(data.get("val", [])),
                   test=list(data.get("test", [])), seed=int(data.get("seed", 0)))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the split as JSON, atomically."""
        return write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Split":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: split file not found. Make one with the data command or give its path.")
        return cls.from_dict(read_json_file(path, "split"))


def _rank(seed: int, subject: str) -> str:
    return hashlib.sha256(f"{seed}:{subject}".encode("utf-8")).hexdigest()


def make_split(
    subjects: Sequence[str], val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> Split:
    """A deterministic split of `subjects` (repeats ignored) for `seed`.

    Part sizes are the rounded fractions, with every part non-empty when there are at least three
    subjects; two subjects give one for training and one for testing, and no validation.
    Each part is listed sorted by name.

    >>> make_split(["b", "a"]).val
    []
    >>> make_split(["c", "a", "b"], seed=3) == make_split(["a", "b", "c"], seed=3)
    True
    """
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise InputError(
            f"split fractions val={val_fraction}, test={test_fraction}: each must be in [0, 1) "
            "and together below 1 so that subjects remain for training."
        )
    names = sorted(set(str(s) for s in subjects))
    n = len(names)
    if n < 2:
        raise InputError(
            f"a split needs at least two subjects (one to train, one to test); got {n}. Add subjects."
        )
    if n == 2:
        n_val, n_test = 0, 1
    else:
        n_test = max(1, round(n * test_fraction))
        n_val = max(1, round(n * val_fraction))
        while n - n_test - n_val < 1:  # only possible with large fractions and few subjects
            if n_test >= n_val and n_test > 1:
                n_test -= 1
            else:
                n_val -= 1
    ordered = sorted(names, key=lambda s: (_rank(seed, s), s))
    test = sorted(ordered[:n_test])
    val = sorted(ordered[n_test:n_test + n_val])
    train = sorted(ordered[n_test + n_val:])
    return Split(train=train, val=val, test=test, seed=int(seed))
