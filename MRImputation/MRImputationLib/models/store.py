"""Installed model bundles, the download catalogue, and the cache folder the user can open and clear.

Bundles live as folders `<models folder>/<name>-<version>/` (bundle.json + weights). They get
there by import from disk (a folder or a .zip, for offline sites) or by download from the
catalogue (`Resources/models.json`, see `models.schema.json`): only after `confirm(entry)`
agreed (the size is in the question), resumable, checked against the size and SHA-256. Every
weights file is checked against bundle.json's SHA-256 before it is installed; no torch needed.

>>> import tempfile
>>> ModelStore(folder=tempfile.mkdtemp()).installed()
[]
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from ..core.atomic import atomic_directory
from ..core.errors import InputError
from .bundle import INFO_FILE, BundleInfo, BundleSource, read_bundle_info

CATALOGUE_FORMAT = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REQUIRED = ("name", "version", "url", "sha256", "size", "contrasts")


class DownloadDeclined(InputError):
    """The user did not agree to a download; nothing was fetched."""


def default_models_folder(cache_path: str | os.PathLike | None = None) -> Path:
    """Where bundles are installed: `<cache_path>/MRImputation/models` (Slicer passes slicer.app.cachePath),
    else $MRIMPUTATION_MODELS, else the platform's user cache folder."""
    if cache_path:
        return Path(cache_path) / "MRImputation" / "models"
    if os.environ.get("MRIMPUTATION_MODELS"):
        return Path(os.environ["MRIMPUTATION_MODELS"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "MRImputation" / "Cache"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches" / "MRImputation"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "MRImputation"
    return base / "models"


def _folder_name(name: str, version: str) -> str:
    """A file-system-safe `<name>-<version>`.

    >>> _folder_name("mm-gan IXI/T1", "1.0")
    'mm-gan_IXI_T1-1.0'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{name}-{version}").strip("._") or "model"


@dataclass
class CatalogueEntry:
    """One downloadable bundle of the catalogue: where it is, how big, its SHA-256, and its card."""

    name: str
    version: str
    url: str
    sha256: str
    size: int
    contrasts: list[str]
    reference: str = ""
    title: str = ""
    description: str = ""
    training: str = ""
    intended_use: str = ""
    license: str = ""
    metrics: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return _folder_name(self.name, self.version)

    def consent_question(self) -> str:
        """The question asked before downloading (the size included)."""
        host = urlparse(self.url).netloc or self.url
        return (f"Download the model {self.title or self.name} {self.version} ({format_size(self.size)}) from {host}? "
                f"It is saved in the models folder and checked against its SHA-256 before use.")


def format_size(size: int | None) -> str:
    """'850 kB', '12.3 MB', '1.20 GB'.

    >>> format_size(850_000), format_size(12_345_678), format_size(1_200_000_000)
    ('850 kB', '12.3 MB', '1.20 GB')
    """
    if size is None:
        return "unknown size"
    if size < 1e6:
        return f"{size / 1e3:.0f} kB"
    if size < 1e9:
        return f"{size / 1e6:.1f} MB"
    return f"{size / 1e9:.2f} GB"


def read_catalogue(path: str | os.PathLike) -> list[CatalogueEntry]:
    """The entries of a catalogue file (format in Resources/models.schema.json); InputError naming what is wrong."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: the model catalogue is missing; reinstall the extension.") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: the model catalogue is not valid JSON ({error}).") from None
    if not isinstance(document, dict) or not isinstance(document.get("models"), list):
        raise InputError(f"{path}: the model catalogue must be an object with a 'models' list.")
    if document.get("format_version", CATALOGUE_FORMAT) > CATALOGUE_FORMAT:
        raise InputError(f"{path}: catalogue format {document['format_version']} is newer than this extension reads "
                         f"({CATALOGUE_FORMAT}); update the extension.")
    return [_entry(item, f"{path}: models[{i}]") for i, item in enumerate(document["models"])]


def _entry(item, where: str) -> CatalogueEntry:
    if not isinstance(item, dict):
        raise InputError(f"{where} must be an object.")
    missing = [k for k in _REQUIRED if k not in item]
    if missing:
        raise InputError(f"{where} lacks {', '.join(missing)}.")
    if not isinstance(item["sha256"], str) or not _SHA256.match(item["sha256"]):
        raise InputError(f"{where}: 'sha256' must be 64 lower-case hexadecimal digits.")
    if not isinstance(item["size"], int) or isinstance(item["size"], bool) or item["size"] <= 0:
        raise InputError(f"{where}: 'size' must be the download's size in bytes.")
    if not str(item["url"]).lower().startswith(("https://", "http://")):
        raise InputError(f"{where}: 'url' must be an http(s) address.")
    if not isinstance(item["contrasts"], list) or len(item["contrasts"]) < 2:
        raise InputError(f"{where}: 'contrasts' must list the model's contrasts in channel order.")
    known = set(CatalogueEntry.__dataclass_fields__)
    return CatalogueEntry(**{k: v for k, v in item.items() if k in known})


@dataclass
class ModelCard:
    """What the panel shows about a model, installed (`path`) or downloadable (`entry`)."""

    name: str
    version: str
    contrasts: list[str]
    reference: str
    path: Path | None = None
    entry: CatalogueEntry | None = None
    info: BundleInfo | None = None

    @property
    def id(self) -> str:
        return _folder_name(self.name, self.version)

    @property
    def installed(self) -> bool:
        return self.path is not None

    @property
    def scenarios(self) -> list[str]:
        return list(self.info.scenarios) if self.info else []

    def label(self) -> str:
        """The model selector's text."""
        where = "" if self.installed else f" — download, {format_size(self.entry.size)}"
        return f"{self.name} {self.version} ({', '.join(self.contrasts)}){where}"

    def to_html(self) -> str:
        """The model card: contrasts, training data, intended use, measured metrics, license, where it is."""
        e = html.escape
        rows = [("Contrasts", f"{', '.join(self.contrasts)} (reference {self.reference})" if self.reference
                 else ", ".join(self.contrasts))]
        if self.info is not None:
            info = self.info
            rows += [("Description", info.description), ("Training data", _training_summary(info.training)),
                     ("Intended use", info.intended_use), ("Measured metrics", _metrics_summary(info.metrics)),
                     ("License", info.license), ("Installed in", str(self.path))]
        elif self.entry is not None:
            entry = self.entry
            rows += [("Description", entry.description), ("Training data", entry.training),
                     ("Intended use", entry.intended_use), ("Measured metrics", _metrics_summary(entry.metrics)),
                     ("License", entry.license),
                     ("Download", f"{format_size(entry.size)} from {urlparse(entry.url).netloc}, SHA-256 "
                                  f"{entry.sha256[:12]}…")]
        body = "".join(f"<tr><td><b>{e(k)}</b></td><td>{e(v)}</td></tr>" for k, v in rows if v)
        return f"<p><b>{e(self.name)}</b> {e(self.version)}</p><table cellspacing='4'>{body}</table>"


def _training_summary(training: dict) -> str:
    parts = []
    for key, label in (("train_subjects", "subjects"), ("train_slices", "slices"), ("epochs_done", "epochs"),
                       ("data", "data"), ("checkpoint", "checkpoint"), ("software", "software")):
        if training.get(key) not in (None, "", [], {}):
            parts.append(f"{label}: {training[key]}")
    return "; ".join(parts) or "not stated"


def _metrics_summary(metrics, prefix: str = "") -> str:
    """Nested metrics flattened to 'key: value' pairs (numbers to 4 significant digits)."""
    if isinstance(metrics, dict):
        parts = [_metrics_summary(v, f"{prefix}{k} ") for k, v in metrics.items()]
        return "; ".join(p for p in parts if p)
    if isinstance(metrics, list):
        return "; ".join(p for p in (_metrics_summary(v, prefix) for v in metrics) if p)
    if isinstance(metrics, float):
        return f"{prefix.strip()}: {metrics:.4g}"
    return f"{prefix.strip()}: {metrics}" if metrics not in (None, "") else ""


def _hash_bytes(chunks) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _file_chunks(path: Path, size: int = 1 << 20):
    with open(path, "rb") as handle:
        yield from iter(lambda: handle.read(size), b"")


def verify_bundle(path: str | os.PathLike) -> BundleInfo:
    """Check every weights file of a bundle (folder or .zip) against bundle.json's SHA-256, without torch."""
    path = Path(path)
    info, document = read_bundle_info(path)
    source = BundleSource(path)
    try:
        for name, entry in document["files"].items():
            if source.archive is None:
                file = path / name
                if not file.is_file():
                    raise InputError(f"{path}: {name} is missing; download or export the bundle again.")
                actual = _hash_bytes(_file_chunks(file))
            else:
                actual = _hash_bytes([source.read(name)])
            if actual != entry["sha256"]:
                raise InputError(f"{path}: {name} is corrupted or modified (its SHA-256 does not match {INFO_FILE}); "
                                 "download or export the bundle again.")
    finally:
        source.close()
    return info


class ModelStore:
    """The installed bundles (one folder), the catalogue, imports, downloads and clearing."""

    def __init__(self, folder: str | os.PathLike | None = None, catalogue: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder else default_models_folder()
        self.catalogue_path = Path(catalogue) if catalogue else None

    def installed(self) -> list[ModelCard]:
        """Installed bundles (folders with bundle.json, or .zip files put here by hand), by name and version."""
        cards = []
        if not self.folder.is_dir():
            return cards
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith(".") or not ((path / INFO_FILE).is_file() or path.suffix == ".zip"):
                continue
            try:
                info, _ = read_bundle_info(path)
            except InputError:
                continue  # a broken bundle is left for the user to see in the folder; it is not offered
            cards.append(ModelCard(info.name, info.version, list(info.contrasts), info.reference, path, None, info))
        return cards

    def catalogue(self) -> list[CatalogueEntry]:
        return read_catalogue(self.catalogue_path) if self.catalogue_path else []

    def cards(self) -> list[ModelCard]:
        """Installed models, then the catalogue's models that are not installed yet."""
        cards = self.installed()
        have = {c.id for c in cards}
        for entry in self.catalogue():
            if entry.id not in have:
                cards.append(ModelCard(entry.name, entry.version, list(entry.contrasts), entry.reference, None, entry))
        return cards

    def find(self, model_id: str) -> ModelCard:
        for card in self.cards():
            if model_id in (card.id, card.name, str(card.path)):
                return card
        raise InputError(f"model {model_id!r} is neither installed in {self.folder} nor in the catalogue.")

    def import_bundle(self, source: str | os.PathLike, replace: bool = False) -> ModelCard:
        """Install a bundle from a folder or .zip after checking every hash; returns its card."""
        source = Path(source)
        info = verify_bundle(source)
        _, document = read_bundle_info(source)
        target = self.folder / _folder_name(info.name, info.version)
        if target.exists() and not replace:
            raise InputError(f"{info.name} {info.version} is already installed in {target}; clear it or import "
                             "a bundle with another version.")
        reader = BundleSource(source)
        try:
            with atomic_directory(target) as tmp:
                for name in (INFO_FILE, *document["files"]):
                    if reader.archive is None:
                        shutil.copyfile(source / name, tmp / name)
                    else:
                        (tmp / name).write_bytes(reader.read(name))
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
        if card.path is None or card.path.parent != self.folder:
            raise InputError(f"{card.name} {card.version} is not installed in {self.folder}.")
        shutil.rmtree(card.path) if card.path.is_dir() else card.path.unlink()

    def clear(self) -> int:
        """Remove every installed bundle and unfinished download; files that are not bundles stay. Returns the count."""
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
