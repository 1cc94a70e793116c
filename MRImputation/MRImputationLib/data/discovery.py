"""Finding subjects and their contrast files in a folder, whatever the usual layout.

Every volume file under the folder is given a contrast (from its name) and a subject key: its
name with the contrast token removed (`IXI002-Guys-0828-T1` -> `IXI002-Guys-0828`,
`BraTS-GLI-00001-000-t1n` -> `BraTS-GLI-00001-000`), or its folder's name when nothing is left
(`case7/t1.nii.gz` -> `case7`). This covers IXI's flat tarball contents, BraTS 2021/2023 and
BrainLesion folders, and one folder per subject. Folders named `truth` (the phantom's ground
truth) are not inputs and are skipped; folders reached through symbolic links are searched too.
An image file whose name names no contrast, or several (`s1_T1_T2.nii.gz`), is an error naming it:
never silently left out.

Label files ride along with their subject: a file whose name has the token `seg`
(`TCGA_CS_4943_20000902_seg`, `BraTS2021_00000_seg`) is the subject's tumour mask (every non-zero
voxel is tumour), kept as `SubjectFiles.labels["tumour"]`; it is never a contrast. Other non-contrast
files (brain masks, our own side outputs) are ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..core.contrasts import canonical_contrast, contrast_from_filename, contrasts_in_name, is_contrast_token
from ..core.errors import InputError
from ..core.io import is_volume_file, strip_volume_suffix

SKIPPED_FOLDERS = {"truth", "qc", "__MACOSX"}
# File-name token -> the label a subject's file of that name holds.
LABEL_TOKENS = {"seg": "tumour"}


@dataclass
class SubjectFiles:
    """One subject's contrast files (contrast name -> path) and label files (label name -> path,
    e.g. "tumour" -> its `_seg` file)."""

    subject: str
    files: dict[str, Path] = field(default_factory=dict)
    labels: dict[str, Path] = field(default_factory=dict)

    def has(self, contrasts: Sequence[str]) -> bool:
        return all(canonical_contrast(c) in self.files for c in contrasts)


def _tokens(path: Path) -> list[str]:
    return re.split(r"([-_.\s]+)", strip_volume_suffix(path.name))


def label_kind(path: Path) -> str | None:
    """The label a file holds by its name ("tumour" for a `_seg` file), or None.

    >>> label_kind(Path("TCGA_CS_4943_20000902_seg.nii.gz")), label_kind(Path("case_t1.nii.gz"))
    ('tumour', None)
    """
    return next((LABEL_TOKENS[t.lower()] for t in _tokens(path) if t.lower() in LABEL_TOKENS), None)


def subject_key(path: Path) -> str:
    """The subject a file belongs to: its name without the contrast (or label) token, else its folder's name.

    >>> subject_key(Path("TCGA_CS_4943_20000902_seg.nii.gz")), subject_key(Path("case7/t1.nii.gz"))
    ('TCGA_CS_4943_20000902', 'case7')
    """
    parts = _tokens(path)
    kept = [p for p in parts if not is_contrast_token(p) and p.lower() not in LABEL_TOKENS]
    key = "".join(kept).strip("-_. ")
    key = re.sub(r"[-_.\s]{2,}", lambda m: m.group(0)[0], key)
    return key or path.parent.name


def _volume_files(folder: Path) -> list[Path]:
    """Every volume file under `folder`, following symbolic links to folders (each real folder visited once,
    so a link that points back up cannot loop)."""
    found, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_FOLDERS and not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if is_volume_file(f) and not f.startswith(".")]
    return found


def _refuse_unrecognised(folder: Path, unrecognised: list[str], subjects: dict) -> None:
    """InputError naming every file whose name names no contrast or several, and what was found beside them."""
    shown = "; ".join(unrecognised[:10]) + (f"; and {len(unrecognised) - 10} more" if len(unrecognised) > 10 else "")
    found = (f"Found beside them: {len(subjects)} subject(s) ("
             + ", ".join(f"{k}: {', '.join(sorted(s.files))}" for k, s in list(sorted(subjects.items()))[:5])
             + (", ..." if len(subjects) > 5 else "") + ")." if subjects else "")
    raise InputError(f"{folder}: {len(unrecognised)} image file(s) whose names do not say which one contrast they "
                     f"hold: {shown}. {found} Rename each to name exactly one contrast (e.g. sub-01_T1.nii.gz, "
                     "case7/t2.nii.gz), or move it out of the folder.")


def discover_subjects(folder: str | os.PathLike, contrasts: Sequence[str] | None = None) -> list[SubjectFiles]:
    """All subjects under `folder`, sorted by name; `contrasts` restricts which contrasts are kept."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder. Give the folder that holds the subjects' image files.")
    wanted = {canonical_contrast(c) for c in contrasts} if contrasts else None
    subjects: dict[str, SubjectFiles] = {}
    unrecognised: list[str] = []
    labels: list[Path] = []
    for path in _volume_files(folder):
        try:
            contrast = contrast_from_filename(path)
        except InputError as error:
            why = "ambiguous, it names " + ", ".join(contrasts_in_name(path.name)) if "ambiguous" in str(error) \
                else "names no contrast"
            unrecognised.append(f"{path.relative_to(folder)} ({why})")
            continue
        if contrast is None and label_kind(path):
            labels.append(path)
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
    _attach_labels(folder, subjects, labels)
    if unrecognised and subjects:
        _refuse_unrecognised(folder, unrecognised, subjects)
    if not subjects:
        hint = f" Files that do not name one contrast: {', '.join(unrecognised[:5])}." if unrecognised else ""
        raise InputError(
            f"{folder}: no subject images found (looked for .nii.gz/.nii/.nrrd files whose names contain a contrast "
            f"such as _t1, -T2, _flair, -t1c, -PD).{hint}"
        )
    return [subjects[k] for k in sorted(subjects)]


def _attach_labels(folder: Path, subjects: dict[str, SubjectFiles], labels: list[Path]) -> None:
    """Each label file to its subject (by the same key as its contrasts); one without a subject is ignored."""
    for path in labels:
        subject = subjects.get(subject_key(path))
        if subject is None:
            continue
        kind = label_kind(path)
        if kind in subject.labels:
            raise InputError(f"{folder}: subject {subject.subject} has two {kind} label files ({subject.labels[kind]} "
                             f"and {path}). Keep one per subject.")
        subject.labels[kind] = path
