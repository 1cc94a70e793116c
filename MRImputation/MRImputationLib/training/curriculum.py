"""The curriculum: which scenarios may be drawn at which point of training, as data.

Scenarios are taken from the contrast set's easy → hard list; a stage says from which point of
training (a fraction of the epochs) the first `count` scenarios of that list are in play.

MM-GAN's schedule for 60 epochs (BraTS, 14 scenarios): epochs 0–10 the four one-missing, from 11
+3 two-missing, from 21 the rest of two-missing + one three-missing, from 31 all. For IXI's six
scenarios the analogue is 3, 4, 5, 6 at the same epochs. Other epoch counts scale the boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.contrasts import ContrastSet, Scenario
from ..core.errors import InputError
from ..core.options import read_json_file

MMGAN_BOUNDARIES = (0.0, 11 / 60, 21 / 60, 31 / 60)


@dataclass(frozen=True)
class Curriculum:
    """Stages as (start as a fraction of training, number of easiest scenarios in play).

    >>> from MRImputationLib.core.contrasts import IXI
    >>> c = Curriculum.preset("mmgan", IXI)
    >>> [len(c.scenarios_at(e, 60, IXI)) for e in (0, 10, 11, 21, 31, 59)]
    [3, 3, 4, 5, 6, 6]
    """

    name: str
    stages: tuple[tuple[float, int], ...]

    def __post_init__(self) -> None:
        if not self.stages or self.stages[0][0] != 0:
            raise InputError(f"curriculum {self.name!r}: the first stage must start at 0.")
        starts = [s for s, _ in self.stages]
        if starts != sorted(starts) or any(c < 1 for _, c in self.stages):
            raise InputError(f"curriculum {self.name!r}: stages must start in order and hold at least one scenario.")

    def count_at(self, epoch: int, epochs: int) -> int:
        position = epoch / max(epochs, 1)
        count = self.stages[0][1]
        for start, n in self.stages:
            if position + 1e-9 >= start:
                count = n
        return count

    def scenarios_at(self, epoch: int, epochs: int, contrasts: ContrastSet) -> list[Scenario]:
        ordered = contrasts.scenarios()
        return ordered[: min(self.count_at(epoch, epochs), len(ordered))]

    @classmethod
    def preset(cls, name: str, contrasts: ContrastSet) -> "Curriculum":
        total = len(contrasts.scenarios())
        one_missing = sum(1 for s in contrasts.scenarios() if s.n_missing == 1)
        if name == "mmgan":
            if len(contrasts) == 4:
                counts = (4, 7, 11, 14)
            else:  # IXI-style analogue: one-missing first, then one more scenario per stage
                counts = tuple(min(one_missing + i, total) for i in range(4))
            return cls(name, tuple(zip(MMGAN_BOUNDARIES, counts)))
        if name == "two-stage":  # the public IXI adaptation: 30 % one-missing only, then all
            return cls(name, ((0.0, one_missing), (0.3, total)))
        if name == "none":
            return cls(name, ((0.0, total),))
        raise InputError(f"curriculum {name!r} is unknown; use mmgan, two-stage, none, or a JSON file.")

    @classmethod
    def load(cls, text: str, contrasts: ContrastSet) -> "Curriculum":
        """A preset name, or a JSON file {"name": ..., "stages": [[start_fraction, count], ...]}."""
        path = Path(text)
        if path.suffix == ".json":
            if not path.exists():
                raise InputError(f"{path}: curriculum file not found.")
            data = read_json_file(path, "curriculum")
            try:
                return cls(data.get("name", path.stem), tuple((float(s), int(c)) for s, c in data["stages"]))
            except (AttributeError, KeyError, TypeError, ValueError):
                raise InputError(f"{path}: a curriculum is {{\"stages\": [[start_fraction, count], ...]}}; "
                                 "fix the file.") from None
        return cls.preset(text, contrasts)

    def to_dict(self) -> dict:
        return {"name": self.name, "stages": [list(s) for s in self.stages]}
