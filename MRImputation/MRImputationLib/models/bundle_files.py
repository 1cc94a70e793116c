"""Reading a bundle's files safely: sizes checked before any byte is read, hashes taken while streaming,
and `bundle.json`'s own content hashed.

* Sizes: a weights file is read only when its size on disk (a folder) or the size the archive declares
  (a .zip) equals the `bytes` bundle.json records for it and stays under MAX_FILE_BYTES. A zip member
  that declares gigabytes for a 3 MB archive (a zip bomb) is refused before anything is decompressed.
* Hashes: each file is hashed 1 MiB at a time as it is read; what is kept is exactly what was hashed.
* `manifest_sha256`: the SHA-256 of the canonical bundle.json (every key but this one, keys sorted,
  compact separators, ASCII), written by `write_bundle`. It catches hand edits of what the weights
  cannot catch: the contrast order, the reference contrast, normalization, preprocessing, scenarios.
  Like every hash here it protects against damage and edits, not against a forger, who can recompute it.
  Backward compatibility, explicitly: a bundle.json without `manifest_sha256` (every bundle exported
  before it existed) loads as before, without a warning; one with it must match. Likewise a file entry
  without `bytes` is checked against MAX_FILE_BYTES only.

>>> document = seal_document({"format_version": 1, "name": "m", "files": {}})
>>> manifest_matches(document), manifest_matches({**document, "name": "edited"})
(True, False)
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path, PurePosixPath

from ..core.errors import InputError

INFO_FILE = "bundle.json"
MANIFEST_KEY = "manifest_sha256"
MAX_FILE_BYTES = 4 << 30  # a weights file; MM-GAN's largest preset (mmgan-faithful) is 218 MB in float32
CHUNK = 1 << 20


def manifest_digest(document: dict) -> str:
    """The SHA-256 of `document`'s canonical JSON, without its MANIFEST_KEY."""
    body = {k: v for k, v in document.items() if k != MANIFEST_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def seal_document(document: dict) -> dict:
    """`document` as JSON will read it back, with its MANIFEST_KEY set (what write_bundle writes)."""
    plain = json.loads(json.dumps({k: v for k, v in document.items() if k != MANIFEST_KEY}))
    return {**plain, MANIFEST_KEY: manifest_digest(plain)}


def manifest_matches(document: dict) -> bool:
    """True when `document` has no MANIFEST_KEY (an older bundle) or its content still matches it."""
    recorded = document.get(MANIFEST_KEY)
    return recorded is None or recorded == manifest_digest(document)


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

    def size(self, name: str) -> int:
        """The size of file `name` as the folder or the archive's directory says, before reading it."""
        if self.archive is None:
            file = self.path / name
            if not file.is_file():
                raise InputError(f"{self.path}: {name} is missing; download or export the bundle again.")
            return file.stat().st_size
        try:
            return self.archive.getinfo(self.prefix + name).file_size
        except KeyError:
            raise InputError(f"{self.path}: {name} is missing from the archive; download or export the bundle again.") from None

    def _open(self, name: str):
        return open(self.path / name, "rb") if self.archive is None else self.archive.open(self.prefix + name)

    def read(self, name: str, limit: int | None = None) -> bytes:
        if limit is not None and self.size(name) > limit:
            raise InputError(f"{self.path}: {name} is too large to be a bundle description.")
        with self._open(name) as handle:
            return handle.read() if limit is None else handle.read(limit + 1)[: limit]

    def read_checked(self, name: str, entry: dict, verify: bool = True, keep: bool = True) -> bytes:
        """File `name`'s bytes, refused before reading when its size is not bundle.json's `bytes` (or over
        MAX_FILE_BYTES), and hashed while streaming (when `verify`) against bundle.json's `sha256`;
        `keep=False` only checks (nothing is held in memory) and returns b""."""
        declared, size = entry.get("bytes"), self.size(name)
        if isinstance(declared, int) and not isinstance(declared, bool) and size != declared:
            raise InputError(f"{self.path}: {name} holds {size:,} bytes but {INFO_FILE} records {declared:,}: it is "
                             "corrupted or modified. Download or export the bundle again.")
        if size > MAX_FILE_BYTES:
            raise InputError(f"{self.path}: {name} declares {size:,} bytes, more than the {MAX_FILE_BYTES:,} a bundle's "
                             "file may hold; refusing it. Download or export the bundle again.")
        digest, data, total = hashlib.sha256(), bytearray(), 0
        with self._open(name) as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                total += len(chunk)
                if total > size:
                    raise InputError(f"{self.path}: {name} holds more than the {size:,} bytes it declares; refusing it.")
                digest.update(chunk)
                if keep:
                    data += chunk
        if verify and digest.hexdigest() != entry.get("sha256"):
            raise InputError(f"{self.path}: {name} is corrupted or modified (its SHA-256 does not match {INFO_FILE}); "
                             "download or export the bundle again.")
        return bytes(data)

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()
