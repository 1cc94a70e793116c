"""Checks shared by the families' typed configurations: a bundle's configuration is data from disk,
so every field is checked (type and range) before a network is built from it.

>>> whole("model 'x': depth", 4, 2, 12)
>>> whole("model 'x': depth", 40, 2, 12)
Traceback (most recent call last):
...
MRImputationLib.core.errors.InputError: model 'x': depth 40: must be a whole number from 2 to 12.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar

from ..core.errors import InputError


def whole(what: str, value: Any, low: int, high: int) -> None:
    """InputError unless `value` is a whole number (not a bool, not a float) from `low` to `high`."""
    if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
        raise InputError(f"{what} {value!r}: must be a whole number from {low} to {high}.")


def number(what: str, value: Any, low: float, high: float) -> None:
    """InputError unless `value` is a finite number from `low` to `high`."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and low <= value <= high):
        raise InputError(f"{what} {value!r}: must be a number from {low} to {high}.")


def widths(what: str, value: Any, most: int = 8) -> tuple[int, ...]:
    """A non-empty list of at most `most` channel widths as a tuple (InputError otherwise)."""
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= most:
        raise InputError(f"{what} {value!r}: give a list of 1 to {most} channel widths, e.g. [64, 128, 256, 512].")
    for width in value:
        whole(what, width, 1, 4096)
    return tuple(value)


def check_keys(what: str, data: dict, kind: type) -> None:
    """InputError naming the fields of `data` that the dataclass `kind` does not have."""
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(
            f"{what}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))}). "
            "It may come from a newer MRImputation; update it, or fix the spelling."
        )


def flat_config_from_dict(kind: type, data: Any):
    """A flat dataclass configuration of one family (class attribute `family`) from its JSON object."""
    if not isinstance(data, dict):
        raise InputError(f"model configuration: expected a JSON object, got {type(data).__name__}.")
    data = dict(data)
    family = data.pop("family", None)
    if family != kind.family:
        raise InputError(f"model configuration: family {family!r} is not {kind.family!r}; read it with "
                         "models.family.model_config_from_dict.")
    check_keys(f"{kind.family} model configuration", data, kind)
    if "name" not in data:
        raise InputError("model configuration: 'name' is missing.")
    return kind(**data)


def flat_config_to_dict(config) -> dict[str, Any]:
    """The JSON object of a flat configuration, its family named first."""
    data = {"family": type(config).family, **dataclasses.asdict(config)}
    return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}


def check_image_size(name: str, image_size: Any, smallest: int) -> None:
    """InputError unless the slice size is a power of two of at least `smallest` (and at most 2048)."""
    whole(f"model {name!r}: image_size", image_size, 4, 2048)
    if image_size & (image_size - 1) or image_size < smallest:
        raise InputError(f"model {name!r}: image_size {image_size} must be a power of two >= {smallest}.")


def check_name(name: Any) -> None:
    if not isinstance(name, str):
        raise InputError(f"model configuration: name {name!r} must be a string.")


def check_widths(name: str, base_width: Any, max_width: Any) -> None:
    """InputError unless the first and the widest layer's channel counts are whole numbers in range."""
    whole(f"model {name!r}: base_width", base_width, 1, 4096)
    whole(f"model {name!r}: max_width", max_width, 1, 4096)


def choice(what: str, value: Any, choices: tuple[str, ...]) -> None:
    """InputError unless `value` is one of `choices`."""
    if value not in choices:
        raise InputError(f"{what} {value!r}: choose one of {', '.join(choices)}.")


def preset_named(presets: dict[str, Callable[[int], Any]], name: str, contrasts: int):
    """`presets[name](contrasts)`, or an InputError naming the presets there are."""
    if name not in presets:
        raise InputError(f"model configuration {name!r} is not known; choose one of {', '.join(presets)}.")
    return presets[name](contrasts)


class FlatConfig:
    """Base of a family's flat dataclass configuration: checked when made (`validate`), JSON both ways."""

    family: ClassVar[str]

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return flat_config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return flat_config_from_dict(cls, data)
