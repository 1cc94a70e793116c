"""A preprocessed folder's `manifest.json`: its name, its format, and reading it with clear errors."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import InputError
from ..core.options import read_json_file

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "mrimputation-preprocessed/1"


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a preprocessed folder, with a clear error when it is missing or foreign."""
    path = Path(folder) / MANIFEST_NAME
    if not path.exists():
        raise InputError(f"{folder}: no {MANIFEST_NAME}; run `mrimpute preprocess` on the raw data first.")
    data = read_json_file(path, "preprocessing manifest")
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path}: format {data.get('format') if isinstance(data, dict) else None!r} is not {MANIFEST_FORMAT!r}; preprocess again.")
    return data
