"""Finding subjects and their contrast files in a folder, whatever the usual layout.

Every volume file under the folder is given a contrast (from its name) and a subject key: its
name with the contrast token removed (`IXI002-Guys-0828-T1` -> `IXI002-Guys-0828`,
`BraTS-GLI-00001-000-t1n` -> `BraTS-GLI-00001-000`), or its folder's name when nothing is left
(`case7/t1.nii.gz` -> `case7`). This covers IXI's flat tarball contents, BraTS 2021/2023 and
BrainLesion folders, and one folder per subject. Folders named `truth` (the phantom's ground
truth) are not inputs and are skipped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..core.contrasts import canonical_contrast, contrast_from_filename, is_contrast_token
from ..core.errors import InputError
from ..core.io import is_volume_file, strip_volume_suffix

SKIPPED_FOLDERS = {"truth", "qc", "__MACOSX"}


@dataclass
class SubjectFiles:
    """One subject's contrast files (contrast name -> path)."""

    subject: str
    files: dict[str, Path] = field(default_factory=dict)

    def has(self, contrasts: Sequence[str]) -> bool:
        return all(canonical_contrast(c) in self.files for c in contrasts)


def subject_key(path: Path) -> str:
    """The subject a file belongs to: its name without the contrast token, else its folder's name."""
    stem = strip_volume_suffix(path.name)
    parts = re.split(r"([-_.\s]+)", stem)
    kept = [p for p in parts if not is_contrast_token(p)]
    key = "".join(kept).strip("-_. ")
    key = re.sub(r"[-_.\s]{2,}", lambda m: m.group(0)[0], key)
    return key or path.parent.name


def _volume_files(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_FOLDERS and not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if is_volume_file(f) and not f.startswith(".")]
    return found


def discover_subjects(folder: str | os.PathLike, contrasts: Sequence[str] | None = None) -> list[SubjectFiles]:
    """All subjects under `folder`, sorted by name; `contrasts` restricts which contrasts are kept."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder. Give the folder that holds the subjects' image files.")
    wanted = {canonical_contrast(c) for c in contrasts} if contrasts else None
    subjects: dict[str, SubjectFiles] = {}
    unrecognised: list[str] = []
    for path in _volume_files(folder):
        try:
            contrast = contrast_from_filename(path)
        except InputError:
            unrecognised.append(str(path.relative_to(folder)))
            continue
        if contrast is None or (wanted is not None and contrast not in wanted):
            continue
        key = subject_key(path)
        subject = subjects.setdefault(key, SubjectFiles(key))
        if contrast in subject.files:
            raise InputError(
                f"{folder}: subject {key} has two {contrast} files ({subject.files[contrast]} and {path}). "
                "Keep one file per contrast and subject."
            )
        subject.files[contrast] = path
    if not subjects:
        hint = f" Files whose names name no contrast: {', '.join(unrecognised[:5])}." if unrecognised else ""
        raise InputError(
            f"{folder}: no subject images found (looked for .nii.gz/.nii/.nrrd files whose names contain a contrast "
            f"such as _t1, -T2, _flair, -t1c, -PD).{hint}"
        )
    return [subjects[k] for k in sorted(subjects)]
