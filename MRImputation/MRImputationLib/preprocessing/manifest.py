"""A preprocessed folder's `manifest.json`: its name, its format, and reading it with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import InputError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "mrimputation-preprocessed/1"


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a preprocessed folder, with a clear error when it is missing or foreign."""
    path = Path(folder) / MANIFEST_NAME
    if not path.exists():
        raise InputError(f"{folder}: no {MANIFEST_NAME}; run `mrimpute preprocess` on the raw data first.")
    data = json.loads(path.read_text())
    if data.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path}: format {data.get('format')!r} is not {MANIFEST_FORMAT!r}; preprocess again.")
    return data
