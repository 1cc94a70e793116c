"""The download catalogue (`Resources/models.json`, see `models.schema.json`) and the model cards the
panel and `mrimpute models` show, for built-in, installed and downloadable models alike.

>>> bundle_folder_name("mm-gan IXI/T1", "1.0")
'mm-gan_IXI_T1-1.0'
"""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ..core.errors import InputError
from .bundle import BundleInfo

CATALOGUE_FORMAT = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REQUIRED = ("name", "version", "url", "sha256", "size", "contrasts")


class DownloadDeclined(InputError):
    """The user did not agree to a download; nothing was fetched."""


def bundle_folder_name(name: str, version: str) -> str:
    """A file-system-safe `<name>-<version>`.

    >>> bundle_folder_name("mm-gan IXI/T1", "1.0")
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
        return bundle_folder_name(self.name, self.version)

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
    builtin: bool = False  # shipped in the extension's Resources/Models: read-only, never cleared or replaced

    @property
    def id(self) -> str:
        return bundle_folder_name(self.name, self.version)

    @property
    def installed(self) -> bool:
        """On disk and usable (built-in or installed), as opposed to a catalogue entry still to download."""
        return self.path is not None

    @property
    def kind(self) -> str:
        """'built-in', 'installed' or 'download'."""
        return "built-in" if self.builtin else "installed" if self.installed else "download"

    @property
    def scenarios(self) -> list[str]:
        return list(self.info.scenarios) if self.info else []

    @property
    def family(self) -> str:
        """The model family ("mmgan", "cyclegan", "vaeunet"), as its configuration declares it."""
        model = self.info.model if self.info else {}
        return model.get("family", "mmgan") if isinstance(model, dict) else "mmgan"

    def serves(self) -> str:
        """The scenarios the model serves ("T1→FLAIR; FLAIR→T1"); "every combination ... (n)" when it serves all."""
        from ..core.contrasts import ContrastSet, Scenario

        names = tuple(self.contrasts)
        every = 2 ** len(names) - 2
        if not self.scenarios or (len(names) > 2 and len(set(self.scenarios)) == every):
            return f"every combination of its contrasts ({every})"
        return "; ".join(Scenario(bits).label(ContrastSet(names, None)) for bits in self.scenarios)

    def label(self) -> str:
        """The model selector's text."""
        where = (" — built-in" if self.builtin else "" if self.installed
                 else f" — download, {format_size(self.entry.size)}")
        return f"{self.name} {self.version} ({', '.join(self.contrasts)}){where}"

    def to_html(self) -> str:
        """The model card: contrasts, training data, intended use, measured metrics, license, where it is."""
        e = html.escape
        rows = [("Contrasts", f"{', '.join(self.contrasts)} (reference {self.reference})" if self.reference
                 else ", ".join(self.contrasts))]
        if self.info is not None:
            info = self.info
            rows += [("Family", self.family), ("Serves", self.serves()), ("Description", info.description), ("Training data", _training_summary(info.training)),
                     ("Intended use", info.intended_use), ("Measured metrics", _metrics_summary(info.metrics)),
                     ("License", info.license), ("Baseline", _baseline_summary(info.baseline)),
                     ("Built into the extension" if self.builtin else "Installed in", str(self.path))]
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


def _baseline_summary(baseline: dict) -> str:
    """The bundle's recorded linear baseline, in words ('' when it has none)."""
    if not baseline:
        return ""
    return (f"linear regression fitted on the model's training data ({baseline.get('n_subjects', '?')} subjects); "
            "`mrimpute evaluate` scores it beside the model")
