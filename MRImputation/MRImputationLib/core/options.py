"""Typed command-line values: argparse `type=` functions that refuse what a run cannot use.

Each returns the value or raises `argparse.ArgumentTypeError`, which argparse prints as
`error: argument --batch-size: ...` with exit code 2 before any work starts (a batch of 0, a
negative number of stochastic passes, a NaN learning rate, -1 epochs). JSON files given as
options are read with `read_json_file`, whose InputError names the file and the place of the fault.

>>> positive_int("16"), non_negative_int("0"), positive_float("2e-4")
(16, 0, 0.0002)
>>> positive_int("0")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: 0 is not a whole number of at least 1
>>> positive_float("nan")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: nan is not a finite number above 0
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from .errors import InputError


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < least:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of at least {least}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (epochs, batch size, jobs, threads, image size, subjects)."""
    return _whole(text, 1)


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (stochastic passes, where 0 means none)."""
    return _whole(text, 0)


def _finite(text: str, above_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (above_zero and value == 0):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number {'above' if above_zero else 'of at least'} 0")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a learning rate)."""
    return _finite(text, True)


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a bias strength, a noise level)."""
    return _finite(text, False)


def read_json_file(path: str | Path, what: str):
    """The JSON document in `path`; InputError naming the file (and line and column) when it is absent,
    unreadable or not JSON. `what` says what the file is for ("training configuration")."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file not found; check the path.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: the {what} file cannot be read ({error}).") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: the {what} file is not valid JSON ({error.msg} at line {error.lineno}, column "
                         f"{error.colno}); fix it and retry.") from None
