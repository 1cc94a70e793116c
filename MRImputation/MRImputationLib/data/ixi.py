"""`mrimpute data ixi OUT`: download IXI's T1, T2 and PD tarballs, extract them, list and split the subjects.

Downloads resume (HTTP Range on `<file>.part`) and are renamed into place only when complete and
verified, so an interrupted run is simply run again. Extraction refuses absolute paths, `..`
members and links, and skips files already extracted with the right size. Only the standard
library is used. IXI is CC BY-SA 3.0: acknowledge https://brain-development.org/ixi-dataset/.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import Sequence

from ..core.atomic import atomic_file, write_text
from ..core.download import ProgressCallback, download, no_progress
from ..core.errors import InputError

IXI_BASE_URL = "http://biomedic.doc.ic.ac.uk/brain-development/downloads/IXI"
IXI_URLS = {c: f"{IXI_BASE_URL}/IXI-{c}.tar" for c in ("T1", "T2", "PD")}
SUBJECTS_FORMAT = "mrimputation-subjects/1"


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
    report = on_progress or no_progress
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
    from ..core.contrasts import canonical_contrast
    from .discovery import discover_subjects
    from .splits import make_split

    report = on_progress or no_progress
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
