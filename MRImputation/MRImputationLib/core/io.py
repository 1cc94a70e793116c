"""Reading and writing volumes (NIfTI, NRRD, anything SimpleITK reads), with clear refusals."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_file
from .errors import InputError
from .volume import Volume

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
# Voxel sizes (mm) an MRI of a head can have; outside them the header's geometry is wrong.
SPACING_RANGE_MM = (0.05, 20.0)


def is_volume_file(path: str | os.PathLike) -> bool:
    name = Path(path).name.lower()
    return any(name.endswith(s) for s in VOLUME_SUFFIXES)


def strip_volume_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in VOLUME_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_volume(path: str | os.PathLike, contrast: str | None = None) -> Volume:
    """Read a 3-D scalar volume; refuse 4-D, empty, non-finite, cut-short or unreadable files, and voxel
    sizes outside SPACING_RANGE_MM, with a reason (NIfTI bytes are checked first: core/nifti_check.py)."""
    import SimpleITK as sitk

    from .nifti_check import check_nifti_file

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found. Check the path.")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file. Give a .nii.gz, .nii or .nrrd file.")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        check_nifti_file(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reason"
        raise InputError(
            f"{path}: could not be read as an image ({first}). Give a NIfTI (.nii/.nii.gz) or NRRD file."
        ) from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{path}: has {image.GetNumberOfComponentsPerPixel()} components per voxel (a color or vector image); "
            "give a single-contrast scalar volume."
        )
    dimension = image.GetDimension()
    if dimension == 4:
        size = image.GetSize()
        if size[3] != 1:
            raise InputError(
                f"{path}: is a 4-D image with {size[3]} volumes (size {size}); give one 3-D volume per contrast, "
                "e.g. split it with `fslsplit` or pick one time point."
            )
        image = image[:, :, :, 0]
    elif dimension != 3:
        raise InputError(f"{path}: is a {dimension}-D image; a 3-D volume is needed.")
    if 0 in image.GetSize():
        raise InputError(f"{path}: is empty (size {image.GetSize()}).")
    array = sitk.GetArrayFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.any():
            raise InputError(f"{path}: contains no finite values (all NaN or infinite); the file is damaged.")
        if not finite.all():
            raise InputError(
                f"{path}: contains {int((~finite).sum())} NaN or infinite voxels; replace them (e.g. by 0) and retry."
            )
    if array.size and array.max() == array.min():
        raise InputError(f"{path}: every voxel has the same value ({array.flat[0]}); the image holds no anatomy.")
    check_spacing(image.GetSpacing(), path)
    return Volume.from_sitk(image, contrast=contrast, source=str(path))


def check_spacing(spacing, where) -> None:
    """InputError naming `where` unless every voxel size lies in SPACING_RANGE_MM (e.g. 1e6 mm is a broken header).

    >>> check_spacing((1.0, 1.0, 1.2), "t1.nii.gz")
    >>> check_spacing((1e6, 1.0, 1.0), "t1.nii.gz")
    Traceback (most recent call last):
    ...
    MRImputationLib.core.errors.InputError: t1.nii.gz: voxel size 1e+06 x 1 x 1 mm is not plausible ...
    """
    low, high = SPACING_RANGE_MM
    if not all(low <= float(s) <= high for s in spacing):
        sizes = " x ".join(f"{float(s):g}" for s in spacing)
        raise InputError(f"{where}: voxel size {sizes} mm is not plausible for an MRI (each must lie within "
                         f"{low:g}-{high:g} mm); the header's geometry is wrong. Fix the voxel size in the header "
                         "(NIfTI pixdim) and retry.")


def write_volume(volume: Volume, path: str | os.PathLike, dtype=None, description: str | None = None) -> Path:
    """Write atomically (temp file then rename); the format follows the file name's suffix.

    `description`: a NIfTI file's `descrip` header field (ASCII, cut to 79 characters; e.g. that the
    volume is synthetic, core/labels.py); ITK writes it from the image's "ITK_FileNotes" metadata.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not is_volume_file(path):
        raise InputError(f"{path}: unknown volume format; use .nii.gz, .nii or .nrrd.")
    out = volume if dtype is None else volume.with_array(volume.array.astype(dtype))
    image = out.to_sitk()
    if description:
        image.SetMetaData("ITK_FileNotes", description.encode("ascii", "replace").decode("ascii")[:79])
    with atomic_file(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=path.name.endswith((".gz", ".nrrd")))
    return path
