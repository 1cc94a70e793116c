"""Downloads that resume (HTTP Range on `<file>.part`) and land only when complete and verified.

A file is renamed into place only after its size (and SHA-256, when known) match, so an
interrupted download is simply run again. Only the standard library is used.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from .errors import InputError

USER_AGENT = "MRImputationLib"

ProgressCallback = Callable[[float, str], None]


class DownloadError(RuntimeError):
    """The server or the network failed, or what arrived is not what was expected."""


class DownloadMismatch(DownloadError):
    """What the server offers or sent is not the expected file (size or SHA-256); retrying will not help."""


def no_progress(fraction: float, message: str) -> None:
    """A progress callback that reports nothing."""



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
    report = on_progress or no_progress
    target = Path(target)
    if not url.lower().startswith(("http://", "https://")):
        raise InputError(f"{url}: only http:// and https:// addresses can be downloaded.")
    if _already_there(target, expected_size, sha256, url, report):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    _fetch_part(url, part, expected_size, report, chunk, retries, timeout)
    try:
        _verify(part, expected_size, sha256, url)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, target)
    report(1.0, f"{target.name}: done")
    return target


def _already_there(target: Path, expected_size: int | None, sha256: str | None, url: str,
                   report: ProgressCallback) -> bool:
    """True when `target` exists and passes the checks; one that does not is deleted, to be fetched again."""
    if not target.is_file():
        return False
    try:
        _verify(target, expected_size, sha256, url)
    except DownloadMismatch:
        target.unlink()  # an earlier file that is not the expected one: fetch it again
        return False
    report(1.0, f"{target.name}: already downloaded")
    return True


def _fetch_part(url: str, part: Path, expected_size: int | None, report: ProgressCallback, chunk: int,
                retries: int, timeout: float) -> None:
    """Fill `part` until the server says it is complete, resuming after each failure (at most `retries`)."""
    failures = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if expected_size is not None and offset > expected_size:
            part.unlink()
            offset = 0
        if expected_size is not None and offset == expected_size:
            return
        failure = _attempt(url, part, offset, expected_size, report, chunk, timeout)
        if failure is None:
            return
        failures += 1
        if failures > retries:
            raise DownloadError(
                f"{url}: download failed after {failures} attempt(s) ({failure}). Run again: it resumes from "
                f"{part.stat().st_size if part.exists() else 0} bytes."
            )
        time.sleep(min(0.5 * failures, 5.0))


def _attempt(url: str, part: Path, offset: int, expected_size: int | None, report: ProgressCallback, chunk: int,
             timeout: float) -> str | None:
    """One request: None when the file is complete, else why not; what retrying cannot fix raises."""
    try:
        finished = _transfer(url, part, offset, expected_size, report, chunk, timeout)
    except urllib.error.HTTPError as error:
        if 400 <= error.code < 500 and error.code not in (408, 429):
            raise InputError(
                f"{url}: the server answered {error.code} {error.reason}. Check the address "
                "(or the mirror given as base URL)."
            ) from None
        return f"the server answered {error.code} {error.reason}"
    except DownloadMismatch:
        raise
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        return str(getattr(error, "reason", error))
    return None if finished else "the connection closed early"


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
