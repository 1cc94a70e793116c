"""`mrimpute data ixi OUT`: download IXI's T1, T2 and PD tarballs, extract them, list and split the subjects.

Downloads resume (HTTP Range on `<file>.part`) and are renamed into place only when complete and
verified, so an interrupted run is simply run again. Extraction refuses absolute paths, `..`
members and links, and skips files already extracted with the right size. Only the standard
library is used. IXI is CC BY-SA 3.0: acknowledge https://brain-development.org/ixi-dataset/.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

from ..core.atomic import atomic_file, write_text
from ..core.errors import InputError

IXI_BASE_URL = "http://biomedic.doc.ic.ac.uk/brain-development/downloads/IXI"
IXI_URLS = {c: f"{IXI_BASE_URL}/IXI-{c}.tar" for c in ("T1", "T2", "PD")}
SUBJECTS_FORMAT = "mrimputation-subjects/1"
USER_AGENT = "MRImputationLib (IXI downloader)"

ProgressCallback = Callable[[float, str], None]


class DownloadError(RuntimeError):
    """The server or the network failed, or what arrived is not what was expected."""


class DownloadMismatch(DownloadError):
    """What the server offers or sent is not the expected file (size or SHA-256); retrying will not help."""


def _null(fraction: float, message: str) -> None:
    pass


def _sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, expected_size: int | None, sha256: str | None, url: str) -> None:
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise DownloadMismatch(
            f"{url}: {path.name} has {size} bytes, expected {expected_size}; it was deleted. "
            "Check the address (or mirror) and the expected size, then run again."
        )
    if sha256 is not None:
        actual = _sha256_of(path)
        if actual.lower() != sha256.lower():
            raise DownloadMismatch(
                f"{url}: {path.name} has SHA-256 {actual}, expected {sha256}; it was deleted. "
                "Check the address (or mirror) and the expected checksum, then run again."
            )


def _total_from(response, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if response.status == 206 and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    if length is None or not length.isdigit():
        return None
    return int(length) + (offset if response.status == 206 else 0)


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    # A fresh opener reads the proxy settings of the moment (no_proxy included).
    opener = urllib.request.build_opener()
    return opener.open(request, timeout=timeout)


def download(
    url: str,
    target: str | os.PathLike,
    expected_size: int | None = None,
    sha256: str | None = None,
    on_progress: ProgressCallback | None = None,
    chunk: int = 1 << 20,
    retries: int = 3,
    timeout: float = 60.0,
) -> Path:
    """Download `url` to `target`, resuming `target.part` if an earlier run was interrupted.

    The size (when known from `expected_size` or the server) and `sha256` (when given) are
    checked before the file is renamed into place; a mismatch discards the partial file. An
    existing `target` that passes the checks is kept without contacting the server.
    """
    report = on_progress or _null
    target = Path(target)
    if not url.lower().startswith(("http://", "https://")):
        raise InputError(f"{url}: only http:// and https:// addresses can be downloaded.")
    if target.is_file():
        try:
            _verify(target, expected_size, sha256, url)
        except DownloadMismatch:
            target.unlink()  # an earlier file that is not the expected one: fetch it again
        else:
            report(1.0, f"{target.name}: already downloaded")
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    failures = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if expected_size is not None and offset > expected_size:
            part.unlink()
            offset = 0
        if expected_size is not None and offset == expected_size:
            break
        try:
            finished = _transfer(url, part, offset, expected_size, report, chunk, timeout)
        except urllib.error.HTTPError as error:
            if 400 <= error.code < 500 and error.code not in (408, 429):
                raise InputError(
                    f"{url}: the server answered {error.code} {error.reason}. Check the address "
                    "(or the mirror given as base URL)."
                ) from None
            failure = f"the server answered {error.code} {error.reason}"
        except DownloadMismatch:
            raise
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            failure = str(getattr(error, "reason", error))
        else:
            if finished:
                break
            failure = "the connection closed early"
        failures += 1
        if failures > retries:
            raise DownloadError(
                f"{url}: download failed after {failures} attempt(s) ({failure}). Run again: it resumes from "
                f"{part.stat().st_size if part.exists() else 0} bytes."
            )
        time.sleep(min(0.5 * failures, 5.0))
    try:
        _verify(part, expected_size, sha256, url)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, target)
    report(1.0, f"{target.name}: done")
    return target


def _transfer(url, part: Path, offset: int, expected_size, report, chunk: int, timeout: float) -> bool:
    """One request; True when the file is complete (as far as the server's length says)."""
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # Nothing left after `offset`: complete if the server's total says so, else start over.
            total = error.headers.get("Content-Range", "").rsplit("/", 1)[-1].strip()
            if total.isdigit() and int(total) == offset:
                return True
            part.unlink(missing_ok=True)
            return False
        raise
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range header: start over
        if response.status == 206 and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            part.unlink(missing_ok=True)  # a range other than the one asked for: start over without one
            return False
        total = _total_from(response, offset)
        if expected_size is not None and total is not None and total != expected_size:
            raise DownloadMismatch(
                f"{url}: the server offers {total} bytes, expected {expected_size}; the file differs "
                "from the one expected. Check the address."
            )
        total = total if total is not None else expected_size
        received, last_report = offset, 0.0
        with open(part, "ab" if offset else "wb") as handle:
            while True:
                block = response.read(chunk)
                if not block:
                    break
                handle.write(block)
                received += len(block)
                if total and (time.monotonic() - last_report > 0.25 or received >= total):
                    last_report = time.monotonic()
                    report(received / total, f"{part.name[:-5]}: {received / 1e6:.0f} of {total / 1e6:.0f} MB")
    return total is None or received >= total


def _check_member(member: tarfile.TarInfo, out_dir: Path, tar_path: Path) -> None:
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts or "\\" in name:
        raise InputError(f"{tar_path}: member {name!r} would be written outside the folder; the archive is refused.")
    if not (member.isfile() or member.isdir()):
        raise InputError(f"{tar_path}: member {name!r} is a link or a special file; the archive is refused.")
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is not None:
        try:
            data_filter(member, str(out_dir))
        except tarfile.FilterError as error:
            raise InputError(f"{tar_path}: member {name!r} is unsafe ({error}); the archive is refused.") from None


def extract_tar(
    tar_path: str | os.PathLike, out_dir: str | os.PathLike, on_progress: ProgressCallback | None = None
) -> list[Path]:
    """Extract the regular files of `tar_path` into `out_dir` (every member is checked first).

    Files already present with the member's size are skipped; each file is written atomically.
    Returns the paths of every file of the archive.
    """
    report = on_progress or _null
    tar_path, out_dir = Path(tar_path), Path(out_dir)
    try:
        archive = tarfile.open(tar_path, "r:*")
    except (tarfile.TarError, OSError) as error:
        raise InputError(
            f"{tar_path}: not a readable tar archive ({error}); delete it and download it again."
        ) from None
    with archive:
        members = archive.getmembers()
        for member in members:
            _check_member(member, out_dir, tar_path)
        files = [m for m in members if m.isfile()]
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for i, member in enumerate(files):
            destination = out_dir.joinpath(*PurePosixPath(member.name).parts)
            written.append(destination)
            if destination.is_file() and destination.stat().st_size == member.size:
                continue
            source = archive.extractfile(member)
            with atomic_file(destination) as tmp, source, open(tmp, "wb") as handle:
                for block in iter(lambda: source.read(1 << 20), b""):
                    handle.write(block)
            report((i + 1) / len(files), f"{tar_path.name}: {destination.name}")
    report(1.0, f"{tar_path.name}: {len(files)} files")
    return written


def fetch_ixi(
    out: str | os.PathLike,
    base_url: str | None = None,
    contrasts: Sequence[str] = ("T1", "T2", "PD"),
    on_progress: ProgressCallback | None = None,
    keep_archives: bool = True,
    seed: int = 0,
) -> Path:
    """Download and extract IXI into `out/raw/`, then write `out/subjects.json` and `out/split.json`.

    `base_url` replaces the official address (a mirror, or a local server in tests); archives go
    to `out/downloads/` and are deleted after extraction unless `keep_archives`. Returns `out`.
    """
    from .discovery import discover_subjects
    from ..core.contrasts import canonical_contrast
    from .splits import make_split

    report = on_progress or _null
    out = Path(out)
    names = [canonical_contrast(c) for c in contrasts]
    unknown = [c for c in names if c not in IXI_URLS]
    if unknown:
        raise InputError(f"IXI has no {', '.join(unknown)} archive here; choose from {', '.join(IXI_URLS)}.")
    raw, downloads = out / "raw", out / "downloads"
    share = 1.0 / len(names)
    for k, contrast in enumerate(names):
        url = f"{base_url.rstrip('/')}/IXI-{contrast}.tar" if base_url else IXI_URLS[contrast]
        archive = downloads / f"IXI-{contrast}.tar"
        marker = downloads / f"IXI-{contrast}.extracted.json"
        if _extracted_already(marker, raw):
            report((k + 1) * share, f"IXI {contrast}: extracted already")
            continue
        download(url, archive, on_progress=lambda f, m, k=k: report((k + 0.8 * f) * share, f"downloading {m}"))
        files = extract_tar(archive, raw, on_progress=lambda f, m, k=k: report((k + 0.8 + 0.2 * f) * share, m))
        listing = {str(p.relative_to(raw)): p.stat().st_size for p in files}
        write_text(marker, json.dumps({"archive": url, "files": listing}, indent=1))
        if not keep_archives:
            archive.unlink(missing_ok=True)

    subjects = discover_subjects(raw, names)
    complete = [s for s in subjects if s.has(names)]
    incomplete = {s.subject: sorted(set(names) - set(s.files)) for s in subjects if not s.has(names)}
    listing = {
        "format": SUBJECTS_FORMAT,
        "source": base_url or IXI_BASE_URL,
        "contrasts": names,
        "subjects": [
            {"subject": s.subject, "files": {c: str(Path(s.files[c]).relative_to(out)) for c in names}}
            for s in complete
        ],
        "incomplete": {name: {"missing": missing} for name, missing in sorted(incomplete.items())},
        "license": "IXI data: CC BY-SA 3.0, https://brain-development.org/ixi-dataset/",
    }
    write_text(out / "subjects.json", json.dumps(listing, indent=1))
    make_split([s.subject for s in complete], seed=seed).save(out / "split.json")
    report(1.0, f"IXI: {len(complete)} complete subjects")
    return out


def _extracted_already(marker: Path, raw: Path) -> bool:
    if not marker.is_file():
        return False
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError):
        return False
    return all((raw / name).is_file() and (raw / name).stat().st_size == size for name, size in files.items())
