"""What marks an output as synthetic wherever it goes: a NIfTI header, a Slicer node, a DICOM export.

A synthesized volume looks like an acquisition; nothing downstream may mistake it for one. So the
NIfTI files `mrimpute impute` writes say it in their `descrip` field (`nifti_description`), and the
Slicer nodes carry the DICOM tags Slicer's DICOM export reads from a series' subject-hierarchy
attributes ("DICOM.<Tag>", `dicom_series_tags`): the series description says SYNTHETIC, the
modality is MR, manufacturer and model name the software and the network. The image type
(DERIVED\\SECONDARY\\SYNTHETIC) is recorded too, for exporters that write it: Slicer's scalar-volume
exporter (CreateDICOMSeries) writes its own fixed image type, so there the series description is
what says it.
"""

from __future__ import annotations

SYNTHETIC = "SYNTHETIC"
NIFTI_DESCRIPTION_LENGTH = 79  # the NIfTI-1 descrip field holds 80 bytes, NUL-terminated
DICOM_LO_LENGTH = 64  # SeriesDescription, Manufacturer, ManufacturerModelName are LO (long string)
IMAGE_TYPES = {
    "synthetic": "DERIVED\\SECONDARY\\SYNTHETIC",
    "uncertainty": "DERIVED\\SECONDARY\\SYNTHETIC\\UNCERTAINTY",
    "error": "DERIVED\\SECONDARY\\SYNTHETIC\\ERROR",
}


def _what(contrast: str, kind: str) -> str:
    if kind == "synthetic":
        return f"{SYNTHETIC} {contrast}, not acquired"
    if kind == "uncertainty":
        return f"{SYNTHETIC} {contrast} uncertainty"
    if kind == "error":
        return f"{contrast} error of a {SYNTHETIC} volume"
    raise ValueError(f"output kind {kind!r}: synthetic, uncertainty or error")


def nifti_description(contrast: str, kind: str = "synthetic", model: str = "") -> str:
    """The `descrip` of an output NIfTI file (ASCII, at most 79 characters).

    >>> nifti_description("PD", model="ixi-t1t2pd 1.0.0")
    'SYNTHETIC PD, not acquired: MRImputation ixi-t1t2pd 1.0.0'
    """
    text = f"{_what(contrast, kind)}: MRImputation {model}".strip()
    return text.encode("ascii", "replace").decode("ascii")[:NIFTI_DESCRIPTION_LENGTH]


def dicom_series_tags(contrast: str, kind: str = "synthetic", model: str = "") -> dict[str, str]:
    """The series tags of an output, by DICOM keyword, as Slicer's DICOM export reads them.

    >>> dicom_series_tags("PD", model="ixi 1.0")["SeriesDescription"]
    'SYNTHETIC PD, not acquired (MR Imputation)'
    """
    return {
        "SeriesDescription": f"{_what(contrast, kind)} (MR Imputation)"[:DICOM_LO_LENGTH],
        "ImageType": IMAGE_TYPES[kind],
        "Modality": "MR",
        "Manufacturer": "MRImputation (synthetic image)"[:DICOM_LO_LENGTH],
        "Model": (model.strip() or "MRImputation")[:DICOM_LO_LENGTH],
    }
