"""Model bundles: a folder (or a .zip of it) with `bundle.json` and `.safetensors` weights.

`bundle.json` holds the format version, what the model is (name, version, contrasts in channel
order, reference contrast, normalization, preprocessing, network configuration, training data
summary, measured metrics, scenarios, intended use, license) and the SHA-256 of every weights
file. Weights are read with safetensors only: nothing from disk is ever unpickled.

Reading the description (`read_bundle_info`) needs no torch; loading the weights does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..core.atomic import atomic_directory, atomic_file
from ..core.errors import InputError
from .family import FamilyConfig, model_config_from_dict

if TYPE_CHECKING:
    import torch

BUNDLE_FORMAT = 1
INFO_FILE = "bundle.json"
WEIGHTS_SUFFIX = ".safetensors"
MAX_INFO_BYTES = 16 * 1024 * 1024
_WEIGHTS_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class BundleInfo:
    """Everything `bundle.json` says about a model, except the weights' hashes.

    >>> info = BundleInfo(name="demo", version="1.0", contrasts=["T1", "T2", "PD"], reference="PD",
    ...                   normalization={"method": "percentile"}, preprocessing={"n4": True},
    ...                   model={"name": "mmgan-faithful", "contrasts": 3})
    >>> BundleInfo.from_dict(info.to_dict()) == info
    True
    """

    name: str
    version: str
    contrasts: list[str]
    reference: str
    normalization: dict
    preprocessing: dict
    model: dict  # the model family's configuration, to_dict()
    training: dict = field(default_factory=dict)  # data summary: subjects, split, epochs, ...
    metrics: dict = field(default_factory=dict)
    scenarios: list[str] = field(default_factory=list)  # bit strings in channel order, 1 = available
    intended_use: str = ""
    license: str = ""
    description: str = ""

    def model_config(self) -> FamilyConfig:
        return model_config_from_dict(self.model)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "bundle") -> "BundleInfo":
        """From the fields of `bundle.json`; keys that are not fields (format_version, files) are ignored."""
        fields = dataclasses.fields(cls)
        names = {f.name for f in fields}
        required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in data]
        if missing:
            raise InputError(f"{source}: {INFO_FILE} lacks {', '.join(missing)}; export the bundle again.")
        info = cls(**{k: v for k, v in data.items() if k in names})
        info.validate(source)
        return info

    def validate(self, source: str = "bundle") -> None:
        """Refuse a description that could not drive the model (InputError naming the field)."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError(f"{source}: the model needs a name.")
        if not isinstance(self.version, str):
            raise InputError(f"{source}: 'version' must be a string such as \"1.0\".")
        if not isinstance(self.contrasts, list) or len(self.contrasts) < 2 or not all(isinstance(c, str) and c for c in self.contrasts):
            raise InputError(f"{source}: 'contrasts' must list at least two contrast names in channel order.")
        if len(set(self.contrasts)) != len(self.contrasts):
            raise InputError(f"{source}: 'contrasts' {self.contrasts} repeats a name.")
        if self.reference not in self.contrasts:
            raise InputError(f"{source}: reference contrast {self.reference!r} is not one of {', '.join(self.contrasts)}.")
        for key in ("normalization", "preprocessing", "model", "training", "metrics"):
            if not isinstance(getattr(self, key), dict):
                raise InputError(f"{source}: {key!r} must be a JSON object.")
        config = self.model_config()
        if config.contrasts != len(self.contrasts):
            raise InputError(
                f"{source}: the network has {config.contrasts} channels but {len(self.contrasts)} contrasts are named."
            )
        for bits in self.scenarios:
            if not (isinstance(bits, str) and len(bits) == len(self.contrasts) and set(bits) <= {"0", "1"}):
                raise InputError(f"{source}: scenario {bits!r} is not a bit string over {len(self.contrasts)} contrasts.")


@dataclass
class Bundle:
    """A loaded model: its description, where it came from and its weights by part ("generator", ...)."""

    info: BundleInfo
    source: Path  # the bundle folder, or the .zip it was read from
    weights: dict[str, dict[str, "torch.Tensor"]]

    @property
    def folder(self) -> Path:
        """The bundle's folder, or the .zip file for a zipped bundle."""
        return self.source


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_bundle(folder: str | os.PathLike, info: BundleInfo, weights: dict[str, dict[str, "torch.Tensor"]]) -> Path:
    """Write a bundle folder atomically: `<part>.safetensors` per entry of `weights`, then `bundle.json`.

    `weights` maps a part name ("generator", "discriminator", ...) to its state dict. An existing
    bundle at `folder` is replaced only once the new one is complete.
    """
    from safetensors.torch import save

    info.validate(str(folder))
    if not weights:
        raise InputError(f"{folder}: a bundle needs at least one weights file (e.g. 'generator').")
    for key in weights:
        if not _WEIGHTS_KEY.match(key):
            raise InputError(f"weights part {key!r}: use letters, digits, '-' and '_' only.")
    folder = Path(folder)
    files: dict[str, dict[str, Any]] = {}
    with atomic_directory(folder) as tmp:
        for key, state in weights.items():
            tensors = {name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in state.items()}
            data = save(tensors, metadata={"format": "pt"})
            name = key + WEIGHTS_SUFFIX
            (tmp / name).write_bytes(data)
            files[name] = {"sha256": _sha256(data), "bytes": len(data)}
        document = {"format_version": BUNDLE_FORMAT, **info.to_dict(), "files": files}
        (tmp / INFO_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return folder


def zip_bundle(folder: str | os.PathLike, zip_path: str | os.PathLike) -> Path:
    """Pack a bundle folder into a .zip (files at the archive's root), written atomically."""
    folder, zip_path = Path(folder), Path(zip_path)
    _, document = read_bundle_info(folder)
    names = [INFO_FILE, *document["files"]]
    with atomic_file(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w") as archive:
            for name in names:
                # Weights hardly compress; storing them keeps reading fast.
                method = zipfile.ZIP_STORED if name.endswith(WEIGHTS_SUFFIX) else zipfile.ZIP_DEFLATED
                archive.write(folder / name, name, compress_type=method)
    return zip_path


class BundleSource:
    """Reads the files of a bundle folder or of a zipped one (flat, or inside one top-level folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.archive: zipfile.ZipFile | None = None
        self.prefix = ""
        if path.is_dir():
            if not (path / INFO_FILE).is_file():
                raise InputError(f"{path}: no {INFO_FILE} in this folder, so it is not a model bundle.")
        elif path.is_file() and zipfile.is_zipfile(path):
            self.archive = zipfile.ZipFile(path)
            self._check_names()
        elif path.exists():
            raise InputError(f"{path}: not a model bundle (expected a folder or a .zip holding {INFO_FILE}).")
        else:
            raise InputError(f"{path}: no such model bundle; check the path.")

    def _check_names(self) -> None:
        names = self.archive.namelist()
        for name in names:
            parts = PurePosixPath(name).parts
            if name.startswith("/") or "\\" in name or ".." in parts or (parts and ":" in parts[0]):
                self.close()
                raise InputError(f"{self.path}: unsafe member name {name!r} in the archive; refusing this bundle.")
        if INFO_FILE in names:
            return
        tops = [n for n in names if PurePosixPath(n).name == INFO_FILE and len(PurePosixPath(n).parts) == 2]
        if len(tops) != 1:
            self.close()
            raise InputError(f"{self.path}: no {INFO_FILE} at the archive's root or in one top-level folder; not a model bundle.")
        self.prefix = PurePosixPath(tops[0]).parts[0] + "/"

    def read(self, name: str, limit: int | None = None) -> bytes:
        if self.archive is None:
            file = self.path / name
            if not file.is_file():
                raise InputError(f"{self.path}: {name} is missing; download or export the bundle again.")
            if limit is not None and file.stat().st_size > limit:
                raise InputError(f"{self.path}: {name} is too large to be a bundle description.")
            return file.read_bytes()
        try:
            member = self.archive.getinfo(self.prefix + name)
        except KeyError:
            raise InputError(f"{self.path}: {name} is missing from the archive; download or export the bundle again.") from None
        if limit is not None and member.file_size > limit:
            raise InputError(f"{self.path}: {name} is too large to be a bundle description.")
        return self.archive.read(member)

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def _parse_document(source: BundleSource) -> tuple[BundleInfo, dict]:
    where = str(source.path)
    try:
        document = json.loads(source.read(INFO_FILE, limit=MAX_INFO_BYTES).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{where}: {INFO_FILE} is not valid JSON ({error}); download or export the bundle again.") from None
    if not isinstance(document, dict):
        raise InputError(f"{where}: {INFO_FILE} must hold a JSON object.")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"{where}: {INFO_FILE} has no valid format_version; this is not a bundle MRImputation can read.")
    if version > BUNDLE_FORMAT:
        raise InputError(
            f"{where}: bundle format {version} was made by a newer MRImputation; update (this version reads "
            f"bundle format {BUNDLE_FORMAT})."
        )
    files = document.get("files")
    if not isinstance(files, dict) or not files:
        raise InputError(f"{where}: {INFO_FILE} lists no weights files; export the bundle again.")
    for name, entry in files.items():
        if not (isinstance(name, str) and name.endswith(WEIGHTS_SUFFIX) and _WEIGHTS_KEY.match(name[: -len(WEIGHTS_SUFFIX)])):
            raise InputError(f"{where}: weights file name {name!r} is not allowed (expected e.g. 'generator.safetensors').")
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and _SHA256.match(entry["sha256"])):
            raise InputError(f"{where}: {name} has no valid SHA-256 in {INFO_FILE}; export the bundle again.")
    return BundleInfo.from_dict(document, where), document


def read_bundle_info(path: str | os.PathLike) -> tuple[BundleInfo, dict]:
    """The description of the bundle at `path` (folder or .zip) and the raw `bundle.json`; no torch needed."""
    source = BundleSource(Path(path))
    try:
        return _parse_document(source)
    finally:
        source.close()


def load_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Load a bundle's description and weights, checking each file's SHA-256 unless `verify` is False.

    Weights are parsed by safetensors from the bytes that were hashed (no pickle, no torch.load);
    a zipped bundle is read in memory, never extracted.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    source = BundleSource(Path(path))
    try:
        info, document = _parse_document(source)
        weights: dict[str, dict[str, torch.Tensor]] = {}
        for name, entry in document["files"].items():
            data = source.read(name)
            if verify and _sha256(data) != entry["sha256"]:
                raise InputError(
                    f"{source.path}: {name} is corrupted or modified (its SHA-256 does not match {INFO_FILE}); "
                    "download or export the bundle again."
                )
            try:
                weights[name[: -len(WEIGHTS_SUFFIX)]] = load(data)
            except (SafetensorError, ValueError) as error:
                raise InputError(f"{source.path}: {name} is not a readable safetensors file ({error}); download or export it again.") from None
    finally:
        source.close()
    return Bundle(info, Path(path), weights)

