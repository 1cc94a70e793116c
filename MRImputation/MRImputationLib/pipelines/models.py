"""`mrimpute models`: the built-in and installed models; and what a `--model` argument names.

`--model` of `mrimpute impute` and `mrimpute evaluate` is a path (a bundle folder or .zip, or a
training run folder) or the name (or name-version) of a built-in or installed model
(models/store.py: `ModelStore.resolve`).

>>> print(models_table([]))
No model is built in or installed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from ..core.progress import Progress
from ..models.catalogue import ModelCard


def model_row(card: ModelCard) -> dict:
    """One model for machines: name, version, contrasts, reference, kind (built-in / installed), path, id."""
    info = card.info
    return {"name": card.name, "version": card.version, "contrasts": list(card.contrasts), "reference": card.reference,
            "kind": card.kind, "builtin": card.builtin, "path": str(card.path), "id": card.id,
            "baseline": bool(info and info.baseline), "scenarios": card.scenarios, "family": card.family,
            "serves": card.serves()}


def models_table(rows: list[dict]) -> str:
    """The rows as a plain-text table for people.

    >>> print(models_table([{"name": "m", "version": "1.0", "contrasts": ["T1", "T2"], "kind": "built-in",
    ...                      "path": "/x/m", "family": "cyclegan", "serves": "T1→T2; T2→T1"}]))
    name  version  family    contrasts  serves        kind      path
    m     1.0      cyclegan  T1, T2     T1→T2; T2→T1  built-in  /x/m
    """
    if not rows:
        return "No model is built in or installed."
    header = ["name", "version", "family", "contrasts", "serves", "kind", "path"]
    table = [header] + [[r["name"], r["version"], r.get("family", "mmgan"), ", ".join(r["contrasts"]),
                         r.get("serves", ""), r["kind"], r["path"]] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table)


def list_models(on_log: Callable[[str], None] | None = None) -> dict:
    """{"models": rows, "folder": the installed models' folder, "builtin_folder": the extension's}."""
    from ..models.store import user_store

    store = user_store(on_log=on_log)
    return {"models": [model_row(c) for c in store.local()], "folder": str(store.folder),
            "builtin_folder": str(store.builtin_folder)}


def show_models(as_json: bool, progress: Progress) -> dict:
    """`mrimpute models`: the listing on stdout, as one JSON line (`--json`) or a table for people (neither
    with `--progress json`, whose done event carries it); returns it for the done event."""
    listing = list_models(on_log=progress.log)
    if as_json or progress.mode != "json":
        print(json.dumps(listing) if as_json else models_table(listing["models"]), flush=True)
    return listing


def resolve_model(model: str | os.PathLike, option: str = "--model",
                  on_log: Callable[[str], None] | None = None) -> Path:
    """The bundle or run folder `model` names: an existing path as it is, else a built-in or installed model
    by name (InputError listing the known names)."""
    from ..models.store import user_store

    if Path(model).expanduser().exists():
        return Path(model).expanduser()
    return user_store(on_log=on_log).resolve(model, option)
