"""Preprocessing of one subject and of a folder of subjects.

Per subject: read every contrast -> N4 on its own grid -> rigid (or affine) registration into the
reference contrast's grid -> brain mask from all registered contrasts -> normalization parameters
inside the mask -> QC pictures -> a record of everything done. The subject's output folder is
written atomically: a failed or cancelled subject leaves nothing behind.

A subject's tumour mask (its `_seg` file, data/discovery.py) comes along onto the reference grid by
nearest neighbour, through the registration of the contrast whose grid it is on (the reference
first, then FLAIR, when several contrasts share it), as `<subject>_tumour_mask.nii.gz` (0/1):
the manifest record's "tumour_mask", with how it got there in its steps.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_directory
from ..core.contrasts import REFERENCE_PRIORITY, canonical_contrast
from ..core.errors import InputError
from ..core.io import read_volume, write_volume
from ..core.progress import ProgressCallback, null_progress
from ..data.discovery import SubjectFiles

# A subject's tumour mask in its preprocessed folder: <subject>_tumour_mask.nii.gz.
TUMOUR_MASK_SUFFIX = "tumour_mask.nii.gz"


@dataclass
class PreprocessConfig:
    """What `mrimpute preprocess` does; saved in every manifest."""

    reference: str | None = None
    register: bool = True
    registration_kind: str = "rigid"
    n4: bool = True
    normalization: str = "percentile"
    qc: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessConfig":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def choose_reference(volumes: dict, requested: str | None = None) -> str:
    """The requested contrast if given, else the one with the smallest voxels (ties: REFERENCE_PRIORITY)."""
    if requested:
        name = canonical_contrast(requested)
        if name not in volumes:
            raise InputError(
                f"reference contrast {requested} was asked for but this subject has only {', '.join(sorted(volumes))}; "
                "choose one of those with --reference."
            )
        return name

    def rank(name: str):
        priority = REFERENCE_PRIORITY.index(name) if name in REFERENCE_PRIORITY else len(REFERENCE_PRIORITY)
        return (round(float(np.prod(volumes[name].spacing)), 3), priority, name)

    return min(volumes, key=rank)


@dataclass
class PreprocessedSubject:
    """Registered, bias-corrected contrasts on the reference grid, the brain mask and what was done."""

    subject: str
    volumes: dict
    mask: object
    record: dict = field(default_factory=dict)


def preprocess_volumes(
    subject: str,
    volumes: dict,
    config: PreprocessConfig,
    on_progress: ProgressCallback = null_progress,
    keep_intermediate: bool = False,
) -> PreprocessedSubject:
    """Run the pipeline on volumes already in memory (contrast -> Volume). Used by files and by Slicer."""
    from .masking import brain_mask
    from .normalization import NormalizationConfig, fit_normalization

    reference = choose_reference(volumes, config.reference)
    steps: dict = {"reference": reference, "n4": {}, "registration": {}, "normalization": {}}
    intermediate: dict = {"raw": dict(volumes), "corrected": {}, "bias_fields": {}, "before_registration": {}}
    names = [reference] + sorted(n for n in volumes if n != reference)
    total = 2 * len(names) + 1

    corrected = _bias_corrected(volumes, names, config, steps, intermediate, on_progress, 0, total)
    done = len(names)  # one N4 step per contrast
    registered = _registered(corrected, names, config, steps, intermediate, on_progress, done, total)
    done += len(names) - 1  # one registration per contrast but the reference

    on_progress(done / total, "brain mask and normalization")
    mask = brain_mask([registered[n] for n in names])
    if int(mask.array.sum()) == 0:
        raise InputError(f"subject {subject}: the brain mask is empty; check that the images contain a head.")
    for name in names:
        params = fit_normalization(registered[name], mask, NormalizationConfig(method=config.normalization))
        steps["normalization"][name] = params.to_dict()
    on_progress(1.0, f"{subject} preprocessed")
    record = {"subject": subject, "reference": reference, "contrasts": names, "steps": steps}
    result = PreprocessedSubject(subject, {n: registered[n] for n in names}, mask, record)
    if keep_intermediate:
        result.record["_intermediate"] = intermediate
    return result


def check_contrasts_vary(pre: "PreprocessedSubject") -> None:
    """InputError when a contrast is constant inside the brain once on the reference grid: it lies outside
    the reference's field of view (a wrong origin, spacing or direction), so it holds no anatomy there."""
    inside, reference = pre.mask.array > 0, pre.record["reference"]
    for name, volume in pre.volumes.items():
        values = volume.array[inside]
        if name != reference and values.size and float(values.max()) == float(values.min()):
            raise InputError(f"subject {pre.subject}: {name} ({volume.source or name}) is constant "
                             f"({float(values.max()):g}) inside the brain once on {reference}'s grid: the two do not "
                             "overlap in space. Check its header's geometry (origin, voxel size, direction) and that "
                             "both come from one session.")


def _bias_corrected(volumes: dict, names: list[str], config: PreprocessConfig, steps: dict, intermediate: dict,
                    on_progress: ProgressCallback, done: int, total: int) -> dict:
    """Each contrast N4-corrected on its own grid (as float32 without N4); records into steps and intermediate."""
    from .masking import head_mask

    corrected = {}
    for i, name in enumerate(names):
        volume = volumes[name]
        if config.n4:
            from .bias import correct_bias

            on_progress((done + i) / total, f"N4 bias correction of {name}")
            result = correct_bias(volume, mask=head_mask(volume))
            corrected[name] = result.volume
            intermediate["bias_fields"][name] = result.bias_field
            steps["n4"][name] = {"seconds": round(result.seconds, 2)}
        else:
            corrected[name] = volume.with_array(volume.array.astype(np.float32))
        intermediate["corrected"][name] = corrected[name]
    return corrected


def _registered(corrected: dict, names: list[str], config: PreprocessConfig, steps: dict, intermediate: dict,
                on_progress: ProgressCallback, done: int, total: int) -> dict:
    """Every contrast on the reference's (names[0]) grid: registered, or only resampled without registration."""
    from .masking import head_mask

    reference = names[0]
    fixed = corrected[reference]
    fixed_mask = head_mask(fixed) if config.register else None
    registered = {reference: fixed}
    for i, name in enumerate(names[1:]):
        moving = corrected[name]
        intermediate["before_registration"][name] = moving
        on_progress((done + i) / total, f"registering {name} onto {reference}")
        if config.register:
            from .registration import RegistrationConfig, register

            result = register(moving, fixed, RegistrationConfig(kind=config.registration_kind), fixed_mask=fixed_mask)
            registered[name] = result.volume
            steps["registration"][name] = {
                "kind": config.registration_kind,
                "fixed_to_moving": np.asarray(result.fixed_to_moving).round(6).tolist(),
                "seconds": round(result.seconds, 2),
            }
        else:
            if not moving.same_grid(fixed):
                from .registration import resample_to

                moving = resample_to(moving, fixed)
            registered[name] = moving.with_array(moving.array, contrast=name)
    return registered


def write_qc(pre: PreprocessedSubject, folder: Path) -> list[str]:
    """The QC pictures of one subject, into `folder` (file names relative to the subject folder)."""
    from .qc import bias_figure, contrasts_figure, registration_figure

    inter = pre.record.get("_intermediate", {})
    folder.mkdir(parents=True, exist_ok=True)
    written = [contrasts_figure(pre.volumes, folder / "contrasts.png", mask=pre.mask, title=pre.subject)]
    for name, field_ in inter.get("bias_fields", {}).items():
        written.append(bias_figure(inter["raw"][name], inter["corrected"][name], field_,
                                   folder / f"n4_{name}.png", title=f"{pre.subject} {name}: N4"))
    for name, before in inter.get("before_registration", {}).items():
        written.append(registration_figure(pre.volumes[pre.record["reference"]], before, pre.volumes[name],
                                           folder / f"registration_{name}.png",
                                           title=f"{pre.subject}: {name} onto {pre.record['reference']}"))
    return [f"qc/{Path(p).name}" for p in written]


def preprocess_subject(
    subject: SubjectFiles,
    out: str | Path,
    config: PreprocessConfig,
    on_progress: ProgressCallback = null_progress,
) -> dict:
    """Read one subject's files, preprocess, write `out/<subject>/` atomically; return its manifest record."""
    start = time.monotonic()
    volumes = {name: read_volume(path, contrast=name) for name, path in subject.files.items()}
    pre = preprocess_volumes(subject.subject, volumes, config, on_progress, keep_intermediate=config.qc)
    check_contrasts_vary(pre)
    tumour = None
    if "tumour" in subject.labels:
        tumour, pre.record["steps"]["tumour_mask"] = tumour_mask_on_reference(subject.labels["tumour"], volumes, pre)
    target = Path(out) / subject.subject
    outputs = {}
    with atomic_directory(target) as tmp:
        for name, volume in pre.volumes.items():
            file = f"{subject.subject}_{name}.nii.gz"
            write_volume(volume, tmp / file, dtype=np.float32)
            outputs[name] = file
        write_volume(pre.mask, tmp / f"{subject.subject}_brainmask.nii.gz", dtype=np.uint8)
        if tumour is not None:
            write_volume(tumour, tmp / f"{subject.subject}_{TUMOUR_MASK_SUFFIX}", dtype=np.uint8)
        qc_files = write_qc(pre, tmp / "qc") if config.qc else []
    pre.record.pop("_intermediate", None)
    if tumour is not None:
        pre.record["tumour_mask"] = f"{subject.subject}/{subject.subject}_{TUMOUR_MASK_SUFFIX}"
    return {
        **pre.record,
        "status": "ok",
        "inputs": {n: str(p) for n, p in subject.files.items()},
        "outputs": {n: f"{subject.subject}/{f}" for n, f in outputs.items()},
        "mask": f"{subject.subject}/{subject.subject}_brainmask.nii.gz",
        "qc": [f"{subject.subject}/{q}" for q in qc_files],
        "seconds": round(time.monotonic() - start, 2),
    }


def tumour_mask_on_reference(path: Path, raw: dict, pre: PreprocessedSubject) -> tuple:
    """A tumour mask file on the reference grid as 0/1 uint8, and a record of how it got there.

    The mask is taken to lie on the grid of the contrast whose raw grid it shares (the reference
    first, then FLAIR, then in channel order) and follows that contrast's registration, by nearest
    neighbour; a mask on no contrast's grid is resampled by its physical coordinates alone.
    """
    from .registration import resample_to

    volume = read_volume(path)
    reference = pre.record["reference"]
    fixed = pre.volumes[reference]
    if volume.array.ndim != 3:
        raise InputError(f"{path}: a tumour mask must be a 3-D label volume, got shape {volume.array.shape}.")
    order = [reference, "FLAIR"] + [n for n in pre.record["contrasts"] if n not in (reference, "FLAIR")]
    source = next((n for n in order if n in raw and volume.same_grid(raw[n])), None)
    registration = pre.record["steps"]["registration"].get(source) if source else None
    matrix = np.asarray(registration["fixed_to_moving"]) if registration else None
    if volume.same_grid(fixed) and matrix is None:
        on_grid = volume
    else:
        on_grid = resample_to(volume, fixed, matrix, "nearest")
    mask = fixed.with_array((np.asarray(on_grid.array) > 0).astype(np.uint8), contrast="tumour_mask")
    how = ("on the reference grid as given" if on_grid is volume else
           f"through {source}'s registration, nearest neighbour" if matrix is not None else
           "resampled onto the reference grid by position, nearest neighbour")
    record = {"source": str(path), "on_grid_of": source, "how": how, "voxels": int(mask.array.sum())}
    return mask, record
