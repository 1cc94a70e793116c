"""Where models live: built-in bundles, installed ones, the download catalogue, and moving old installs.

* Built-in: bundles shipped in the extension, `MRImputation/Resources/Models/<name>/` (bundle.json +
  weights). Read-only: never removed by "clear", never replaced by an import.
* Installed: folders `<models folder>/<name>-<version>/` in a persistent per-user folder,
  `~/.mrimputation/models` ($MRIMPUTATION_MODELS overrides it); never Slicer's cache folder, which
  Slicer prunes at start-up and empties on "Clear cache". Earlier versions installed there (and in
  the user cache folder outside Slicer): `adopt_legacy_models` moves those bundles on first start.
  Bundles get installed by import from disk (a folder or a .zip, for offline sites) or by download
  from the catalogue (`Resources/models.json`, models/catalogue.py): only after `confirm(entry)`
  agreed (the size is in the question), resumable, checked against the size and SHA-256.
Every file of a bundle is checked against bundle.json's SHA-256 before it is installed; no torch needed.
`ModelStore.resolve` turns a `--model` argument (a path, or a model's name or name-version) into a bundle.

>>> import tempfile
>>> ModelStore(folder=tempfile.mkdtemp()).installed()
[]
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..core.atomic import atomic_directory, atomic_file
from ..core.errors import InputError
from .bundle import INFO_FILE, MAX_INFO_BYTES, BundleInfo, BundleSource, read_bundle_info
from .catalogue import (CatalogueEntry, DownloadDeclined, ModelCard, bundle_folder_name, format_size,
                        read_catalogue)

__all__ = ["BUILTIN_MODELS", "CatalogueEntry", "DownloadDeclined", "ModelCard", "ModelStore", "MovedModels",
           "adopt_legacy_models", "default_models_folder", "format_size", "legacy_models_folders", "move_models",
           "read_catalogue", "user_store", "verify_bundle"]

# The extension's own bundles: MRImputation/Resources/Models beside MRImputationLib (source tree and Slicer alike).
BUILTIN_MODELS = Path(__file__).resolve().parents[2] / "Resources" / "Models"


def default_models_folder() -> Path:
    """Where bundles are installed: $MRIMPUTATION_MODELS, else `~/.mrimputation/models` (every platform,
    inside Slicer too: a folder of the user's that no cache clean-up touches)."""
    if os.environ.get("MRIMPUTATION_MODELS"):
        return Path(os.environ["MRIMPUTATION_MODELS"]).expanduser()
    return Path.home() / ".mrimputation" / "models"


def _user_cache_folder() -> Path:
    """The platform's user cache folder for MRImputation (where models went outside Slicer before)."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "MRImputation" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "MRImputation"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "MRImputation"


def legacy_models_folders(cache_path: str | os.PathLike | None = None) -> list[Path]:
    """Where earlier versions installed models: `<Slicer's cachePath>/MRImputation/models` (give
    `slicer.app.cachePath`), and outside Slicer the user cache folder unless $MRIMPUTATION_MODELS chose another.

    >>> legacy_models_folders("/cache")[0].as_posix()
    '/cache/MRImputation/models'
    """
    folders = [Path(cache_path) / "MRImputation" / "models"] if cache_path else []
    if not os.environ.get("MRIMPUTATION_MODELS"):
        folders.append(_user_cache_folder() / "models")
    return folders


@dataclass
class MovedModels:
    """What `move_models` did: bundles moved, and those left where they were because the name was taken."""

    moved: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __iadd__(self, other: "MovedModels") -> "MovedModels":
        self.moved += other.moved
        self.skipped += other.skipped
        return self

    def message(self, folder: Path) -> str:
        """A line for the log ('' when nothing was there to move)."""
        parts = []
        if self.moved:
            parts.append(f"moved {len(self.moved)} installed model(s) ({', '.join(self.moved)}) to {folder}, where "
                         "no cache clean-up deletes them")
        if self.skipped:
            parts.append(f"left {', '.join(self.skipped)} in the old models folder: {folder} already has that name")
        return "; ".join(parts)


def _is_bundle(path: Path) -> bool:
    return not path.name.startswith(".") and ((path / INFO_FILE).is_file() or path.suffix == ".zip")


def move_models(old: str | os.PathLike, new: str | os.PathLike) -> MovedModels:
    """Move every bundle (a folder with bundle.json, or a .zip) from `old` into `new`.

    Each bundle is renamed when both are on one file system, else copied into a temporary sibling
    that is renamed once complete, and only then removed from `old`: a bundle is either moved or
    still in `old`, never half in both. A name `new` already has is skipped (left in `old`). `old`
    is removed when nothing is left in it.
    """
    old, new = Path(old), Path(new)
    report = MovedModels()
    if not old.is_dir() or (new.exists() and old.resolve() == new.resolve()):
        return report
    for entry in sorted(p for p in old.iterdir() if _is_bundle(p)):
        target = new / entry.name
        if target.exists():
            report.skipped.append(entry.name)
            continue
        new.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(entry, target)
        except OSError:  # another file system (or a device that refuses renames): copy, then remove
            _copy_then_remove(entry, target)
        report.moved.append(entry.name)
    shutil.rmtree(old / ".downloads", ignore_errors=True)  # unfinished downloads of the old version
    try:
        old.rmdir()
    except OSError:
        pass  # other files are there: leave them
    return report


def _copy_then_remove(entry: Path, target: Path) -> None:
    """Copy `entry` into `target` through a temporary sibling, then remove it, first renaming it aside."""
    if entry.is_dir():
        with atomic_directory(target) as tmp:
            shutil.copytree(entry, tmp, dirs_exist_ok=True)
    else:
        with atomic_file(target) as tmp:
            shutil.copyfile(entry, tmp)
    aside = entry.with_name(f".moved-{entry.name}")
    shutil.rmtree(aside, ignore_errors=True) if aside.is_dir() else aside.unlink(missing_ok=True)  # an earlier try's
    os.replace(entry, aside)  # hidden at once, so a removal that stops half-way leaves nothing listed
    shutil.rmtree(aside, ignore_errors=True) if aside.is_dir() else aside.unlink(missing_ok=True)


def adopt_legacy_models(folder: str | os.PathLike | None = None, cache_path: str | os.PathLike | None = None) -> MovedModels:
    """Move the bundles earlier versions installed (`legacy_models_folders`) into `folder` (default the models folder)."""
    folder = Path(folder) if folder else default_models_folder()
    report = MovedModels()
    for old in legacy_models_folders(cache_path):
        report += move_models(old, folder)
    return report


def user_store(catalogue: str | os.PathLike | None = None, cache_path: str | os.PathLike | None = None,
               on_log: Callable[[str], None] | None = None) -> "ModelStore":
    """The user's models: built-in and installed (in the default models folder, after moving old installs)."""
    folder = default_models_folder()
    try:
        message = adopt_legacy_models(folder, cache_path).message(folder)
    except OSError as error:  # a locked or read-only old folder must not stop anything
        message = f"could not move the models of the old models folder to {folder}: {error}"
    if message and on_log:
        on_log(message)
    return ModelStore(folder, catalogue, builtin=BUILTIN_MODELS)


def _version_key(version: str) -> tuple:
    """'1.10.0' after '1.9': numbers compare as numbers.

    >>> sorted(["1.10.0", "1.9", "0.1.0"], key=_version_key)
    ['0.1.0', '1.9', '1.10.0']
    """
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-+]", version))


def verify_bundle(path: str | os.PathLike) -> BundleInfo:
    """Check every weights file of a bundle (folder or .zip) against bundle.json's SHA-256, without torch."""
    path = Path(path)
    info, document = read_bundle_info(path)
    source = BundleSource(path)
    try:
        for name, entry in document["files"].items():
            source.read_checked(name, entry, keep=False)  # size against bundle.json first, then hashed streaming
    finally:
        source.close()
    return info


class ModelStore:
    """The built-in bundles (read-only), the installed ones (one folder), the catalogue, imports, downloads, clearing."""

    def __init__(self, folder: str | os.PathLike | None = None, catalogue: str | os.PathLike | None = None,
                 builtin: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder else default_models_folder()
        self.catalogue_path = Path(catalogue) if catalogue else None
        self.builtin_folder = Path(builtin) if builtin else None

    @staticmethod
    def _scan(folder: Path | None, builtin: bool) -> list[ModelCard]:
        cards = []
        if folder is None or not folder.is_dir():
            return cards
        for path in sorted(p for p in folder.iterdir() if _is_bundle(p)):
            try:
                info, _ = read_bundle_info(path)
            except InputError:
                continue  # a broken bundle is left for the user to see in the folder; it is not offered
            cards.append(ModelCard(info.name, info.version, list(info.contrasts), info.reference, path, None, info,
                                   builtin))
        return cards

    def builtin(self) -> list[ModelCard]:
        """The bundles shipped in the extension (Resources/Models), by folder name."""
        return self._scan(self.builtin_folder, True)

    def installed(self) -> list[ModelCard]:
        """Installed bundles (folders with bundle.json, or .zip files put here by hand), by name and version."""
        return self._scan(self.folder, False)

    def local(self) -> list[ModelCard]:
        """Built-in models, then installed ones (one a built-in model's name and version would hide is left out)."""
        cards = self.builtin()
        have = {c.id for c in cards}
        return cards + [c for c in self.installed() if c.id not in have]

    def catalogue(self) -> list[CatalogueEntry]:
        return read_catalogue(self.catalogue_path) if self.catalogue_path else []

    def cards(self) -> list[ModelCard]:
        """Built-in models, installed models, then the catalogue's models that are not here yet."""
        cards = self.local()
        have = {c.id for c in cards}
        for entry in self.catalogue():
            if entry.id not in have:
                cards.append(ModelCard(entry.name, entry.version, list(entry.contrasts), entry.reference, None, entry))
        return cards

    def find(self, model_id: str) -> ModelCard:
        for card in self.cards():
            if model_id in (card.id, card.name, f"{card.name}-{card.version}", str(card.path)):
                return card
        raise InputError(f"model {model_id!r} is neither built in, nor installed in {self.folder}, nor in the catalogue.")

    def resolve(self, model: str | os.PathLike, option: str = "--model") -> Path:
        """The bundle (or run folder) `model` names: a path that exists, else a built-in or installed model's
        name or name-version (a bare name: its newest version, built-in first). InputError listing the names."""
        path = Path(model).expanduser()
        if path.exists():
            return path
        text = str(model).strip()
        cards = self.local()
        exact = [c for c in cards if text in (c.id, f"{c.name}-{c.version}", f"{c.name} {c.version}")]
        named = sorted((c for c in cards if c.name == text), key=lambda c: _version_key(c.version), reverse=True)
        if exact or named:
            return (exact or named)[0].path
        known = "; ".join(f"{c.name}-{c.version} ({c.kind}, {', '.join(c.contrasts)})" for c in cards)
        raise InputError(f"{option} {text!r}: no such file or folder, and no built-in or installed model has that name. "
                         + (f"Known models: {known}. " if cards else f"No model is built in or installed in {self.folder}. ")
                         + "Give a bundle (folder or .zip), a training run folder, or a model's name "
                           "(`mrimpute models` lists them).")

    def import_bundle(self, source: str | os.PathLike, replace: bool = False) -> ModelCard:
        """Install a bundle from a folder or .zip after checking every hash; returns its card."""
        source = Path(source)
        info = verify_bundle(source)
        _, document = read_bundle_info(source)
        target = self.folder / bundle_folder_name(info.name, info.version)
        if any(c.id == target.name for c in self.builtin()):
            raise InputError(f"{info.name} {info.version} is built into the extension and cannot be replaced; "
                             "export your bundle with another name or version (mrimpute export --name/--version).")
        if target.exists() and not replace:
            raise InputError(f"{info.name} {info.version} is already installed in {target}; clear it or import "
                             "a bundle with another version.")
        reader = BundleSource(source)
        try:
            with atomic_directory(target) as tmp:
                for name in (INFO_FILE, *document["files"]):
                    if reader.archive is None:
                        shutil.copyfile(source / name, tmp / name)
                    elif name == INFO_FILE:
                        (tmp / name).write_bytes(reader.read(name, limit=MAX_INFO_BYTES))
                    else:
                        (tmp / name).write_bytes(reader.read_checked(name, document["files"][name]))
        finally:
            reader.close()
        return ModelCard(info.name, info.version, list(info.contrasts), info.reference, target, None, info)

    def download(self, entry: CatalogueEntry, confirm: Callable[[CatalogueEntry], bool],
                 on_progress: Callable[[float, str], None] | None = None) -> ModelCard:
        """Download, verify and install a catalogue entry, only if `confirm(entry)` returns True."""
        from ..core.download import download

        if not confirm(entry):
            raise DownloadDeclined(f"the download of {entry.name} {entry.version} was declined; nothing was fetched. "
                                   "Import the bundle from disk instead (Import model…) if you have it.")
        archive = self.folder / ".downloads" / f"{entry.id}.zip"
        download(entry.url, archive, expected_size=entry.size, sha256=entry.sha256, on_progress=on_progress)
        try:
            card = self.import_bundle(archive, replace=True)
        finally:
            archive.unlink(missing_ok=True)
        if (card.name, card.version) != (entry.name, entry.version):
            shutil.rmtree(card.path, ignore_errors=True)
            raise InputError(f"{entry.url} holds {card.name} {card.version}, not {entry.name} {entry.version} as the "
                             "catalogue says; it was not installed.")
        return card

    def remove(self, card: ModelCard) -> None:
        """Delete an installed bundle; a built-in one is refused (it is part of the extension)."""
        if card.builtin:
            raise InputError(f"{card.name} {card.version} is built into the extension; it cannot be removed.")
        if card.path is None or card.path.parent != self.folder:
            raise InputError(f"{card.name} {card.version} is not installed in {self.folder}.")
        shutil.rmtree(card.path) if card.path.is_dir() else card.path.unlink()

    def clear(self) -> int:
        """Remove every installed bundle and unfinished download; built-in models and files that are not bundles
        stay. Returns the count."""
        if not self.folder.is_dir():
            return 0
        removed = 0
        for card in self.installed():
            self.remove(card)
            removed += 1
        shutil.rmtree(self.folder / ".downloads", ignore_errors=True)
        return removed

    def ensure_folder(self) -> Path:
        """The models folder, created if needed (for "Open models folder")."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder
