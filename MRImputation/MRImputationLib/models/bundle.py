"""Model bundles: a folder (or a .zip of it) with `bundle.json` and `.safetensors` weights.

`bundle.json` holds the format version, what the model is (name, version, contrasts in channel
order, reference contrast, normalization, preprocessing, network configuration, training data
summary, measured metrics, scenarios, intended use, license) and the SHA-256 of every weights
file. Weights are read with safetensors only: nothing from disk is ever unpickled. Weights may be
stored as float16 (`write_bundle(half=True)`, `mrimpute export --half`: half the size); loading
casts them back to float32. A bundle may also carry the linear baseline fitted on its model's
training data (`baseline.safetensors`, listed and hashed like the weights; `read_baseline`).

Reading the description (`read_bundle_info`) and the baseline needs no torch; loading the weights does.
Every file is read through `bundle_files.BundleSource`: sizes checked against bundle.json before
reading, hashes taken while streaming, and bundle.json's own content checked against its
`manifest_sha256` (bundles written before that field load as before; see bundle_files.py). The
generator's tensor shapes are compared with its configuration before anything is built
(weights_check.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.atomic import atomic_directory, atomic_file
from ..core.errors import InputError
from .bundle_files import INFO_FILE, MANIFEST_KEY, BundleSource, manifest_matches, seal_document
from .family import FamilyConfig, model_config_from_dict

if TYPE_CHECKING:
    import torch

    from .linear import LinearImputer

BUNDLE_FORMAT = 1
WEIGHTS_SUFFIX = ".safetensors"
BASELINE_FILE = "baseline.safetensors"  # the linear baseline's fitted statistics, not network weights
HALF_MAX = 65504.0  # the largest float16
MAX_INFO_BYTES = 16 * 1024 * 1024
_WEIGHTS_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


INFERENCE_SETTINGS = ("flip_average",)  # imputation/slice_imputer.py's InferenceOptions a bundle may set


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
    baseline: dict = field(default_factory=dict)  # the recorded linear baseline: file, n_subjects, fitted_on
    inference: dict = field(default_factory=dict)  # how the model was measured to run: {"flip_average": true}

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
        for key in ("normalization", "preprocessing", "model", "training", "metrics", "baseline", "inference"):
            if not isinstance(getattr(self, key), dict):
                raise InputError(f"{source}: {key!r} must be a JSON object.")
        try:
            config = self.model_config()
        except InputError as error:
            raise InputError(f"{source}: {INFO_FILE}'s network configuration is not usable: {error}") from None
        if config.contrasts != len(self.contrasts):
            raise InputError(
                f"{source}: the network has {config.contrasts} channels but {len(self.contrasts)} contrasts are named."
            )
        unknown = sorted(set(self.inference) - set(INFERENCE_SETTINGS))
        if unknown or not all(isinstance(v, bool) for v in self.inference.values()):
            raise InputError(f"{source}: 'inference' takes {', '.join(INFERENCE_SETTINGS)} (true or false), "
                             f"got {self.inference}.")
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


def write_bundle(folder: str | os.PathLike, info: BundleInfo, weights: dict[str, dict[str, "torch.Tensor"]],
                 baseline: "LinearImputer | None" = None, half: bool = False) -> Path:
    """Write a bundle folder atomically: `<part>.safetensors` per entry of `weights`, the optional
    `baseline.safetensors`, then `bundle.json`.

    `weights` maps a part name ("generator", "discriminator", ...) to its state dict; `half` stores
    floating-point weights as float16. `baseline` is the linear baseline fitted on the model's
    training data. An existing bundle at `folder` is replaced only once the new one is complete.
    """
    from safetensors.torch import save

    info.validate(str(folder))
    if not weights:
        raise InputError(f"{folder}: a bundle needs at least one weights file (e.g. 'generator').")
    for key in weights:
        if not _WEIGHTS_KEY.match(key) or key + WEIGHTS_SUFFIX == BASELINE_FILE:
            raise InputError(f"weights part {key!r}: use letters, digits, '-' and '_' only (and not 'baseline').")
    folder = Path(folder)
    blobs = {key + WEIGHTS_SUFFIX: save(_stored_tensors(state, half, key), metadata={"format": "pt"})
             for key, state in weights.items()}
    recorded = {}  # bundle.json's "baseline": what the file holds (the caller may add "fitted_on")
    if baseline is not None:
        blobs[BASELINE_FILE] = _baseline_bytes(baseline, info, str(folder))
        recorded = {**info.baseline, "file": BASELINE_FILE, "method": "linear", "n_subjects": baseline.n_subjects,
                    "n_voxels": baseline.n_voxels}
    info = dataclasses.replace(info, baseline=recorded)
    document = seal_document({"format_version": BUNDLE_FORMAT, **info.to_dict(),
                              **({"weights_dtype": "float16"} if half else {}),
                              "files": {name: {"sha256": _sha256(data), "bytes": len(data)}
                                        for name, data in blobs.items()}})
    with atomic_directory(folder) as tmp:
        for name, data in blobs.items():
            (tmp / name).write_bytes(data)
        (tmp / INFO_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return folder


def _stored_tensors(state: dict[str, "torch.Tensor"], half: bool, part: str) -> dict[str, "torch.Tensor"]:
    """CPU copies of a state dict; floating-point ones as float16 when `half` (InputError if one overflows)."""
    import torch

    tensors = {}
    for name, tensor in state.items():
        tensor = tensor.detach().to("cpu").contiguous().clone()
        if half and tensor.is_floating_point():
            if tensor.numel() and float(tensor.abs().max()) > HALF_MAX:
                raise InputError(f"{part}: {name} holds values beyond float16's range (±{HALF_MAX:g}); "
                                 "export without --half.")
            tensor = tensor.to(torch.float16)
        tensors[name] = tensor
    return tensors


def _baseline_bytes(baseline: "LinearImputer", info: BundleInfo, where: str) -> bytes:
    """The baseline's fitted statistics as a safetensors file (numpy; no torch needed to read it)."""
    from safetensors.numpy import save

    if list(baseline.contrasts.names) != list(info.contrasts):
        raise InputError(f"{where}: the linear baseline was fitted on {', '.join(baseline.contrasts.names)}, "
                         f"the model has {', '.join(info.contrasts)}; fit it on the model's contrasts.")
    arrays, metadata = baseline.to_state()
    return save(arrays, metadata=metadata)


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
    if not manifest_matches(document):
        raise InputError(f"{where}: {INFO_FILE} was changed after export (its content no longer matches its "
                         f"{MANIFEST_KEY}), so its contrasts, normalization or other settings may not be the ones the "
                         "weights were trained with. Download or export the bundle again.")
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
    a zipped bundle is read in memory, never extracted. Weights stored as float16 (or bfloat16) come
    back as float32; the linear baseline is not among the weights (`read_baseline` reads it).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    from .family import family_of
    from .weights_check import check_weights_fit

    source = BundleSource(Path(path))
    try:
        info, document = _parse_document(source)
        weights: dict[str, dict[str, torch.Tensor]] = {}
        inference = family_of(info.model_config()).inference_network + WEIGHTS_SUFFIX
        for name, entry in document["files"].items():
            data = source.read_checked(name, entry, verify)
            if name == BASELINE_FILE:
                continue  # not network weights: read_baseline reads it
            if name == inference:
                check_weights_fit(info.model_config(), data, f"{source.path}: {name}")
            try:
                weights[name[: -len(WEIGHTS_SUFFIX)]] = _as_float32(load(data))
            except (SafetensorError, ValueError) as error:
                raise InputError(f"{source.path}: {name} is not a readable safetensors file ({error}); download or export it again.") from None
    finally:
        source.close()
    return Bundle(info, Path(path), weights)


def _as_float32(tensors: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    """Half-precision weights (an `export --half` bundle) back to float32; others unchanged."""
    import torch

    return {k: t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for k, t in tensors.items()}


def read_baseline(path: str | os.PathLike) -> "LinearImputer | None":
    """The linear baseline the bundle at `path` carries (hash-checked), or None when it has none; no torch needed."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    from .linear import LinearImputer

    source = BundleSource(Path(path))
    try:
        info, document = _parse_document(source)
        entry = document["files"].get(BASELINE_FILE)
        if entry is None:
            return None
        data = source.read_checked(BASELINE_FILE, entry)
    finally:
        source.close()
    where = f"{path}: {BASELINE_FILE}"
    try:
        arrays = load(data)
        metadata = _safetensors_metadata(data)
    except (SafetensorError, ValueError) as error:
        raise InputError(f"{where} is not a readable safetensors file ({error}); export the bundle again.") from None
    baseline = LinearImputer.from_state(arrays, metadata, where)
    if list(baseline.contrasts.names) != list(info.contrasts):
        raise InputError(f"{where} was fitted on {', '.join(baseline.contrasts.names)}, not on the model's "
                         f"{', '.join(info.contrasts)}; export the bundle again.")
    return baseline


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors file's JSON header (8-byte little-endian length, then the header)."""
    length = int.from_bytes(data[:8], "little")
    if len(data) < 8 or length > len(data) - 8:
        raise ValueError("truncated header")
    metadata = json.loads(data[8: 8 + length].decode("utf-8")).get("__metadata__") or {}
    return {str(k): str(v) for k, v in metadata.items()}
