"""A public, real four-contrast case in Slicer's Sample Data module: from nothing to an imputation in
three clicks (Sample Data > MRImputation > BraTS-GLI-00001-000, then MR Imputation, Impute).

The case is BraTS 2023 glioma case BraTS-GLI-00001-000: T1 (t1n), contrast-enhanced T1 (t1c),
T2 (t2w) and FLAIR (t2f), skull-stripped, co-registered, 1 mm on one 240x240x155 grid in the SRI24
frame. The files are those of the BrainLesion tutorials repository (github.com/BrainLesion/tutorials,
Apache-2.0; BraTS data are shared for research with attribution: cite the BraTS 2023 challenge),
fetched from a pinned commit and checked by SHA-256 (Slicer refuses a file whose checksum differs).
Node names keep the BraTS contrast names, which MR Imputation's input selectors recognise.
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORY = "MRImputation"
CASE = "BraTS-GLI-00001-000"
SOURCE_REPOSITORY = "BrainLesion/tutorials"
SOURCE_COMMIT = "e4ae05dddd61a001f2760eb7a6a6d7a328302b57"  # the last commit that changed these files
SOURCE_FOLDER = f"BraTS/data/segmentation/{CASE}"


@dataclass(frozen=True)
class SampleFile:
    """One volume of the sample case: its file name, the contrast it holds, its SHA-256."""

    file_name: str
    contrast: str
    sha256: str

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{SOURCE_REPOSITORY}/{SOURCE_COMMIT}/{SOURCE_FOLDER}/{self.file_name}"

    @property
    def node_name(self) -> str:
        """'BraTS-GLI-00001-000-t1n': the file name without .nii.gz."""
        return self.file_name[: -len(".nii.gz")]


FILES = (
    SampleFile(f"{CASE}-t1n.nii.gz", "T1", "e860924b936e301ddeba20409fbb59dde322475cb49328f1b46a9235c792e73e"),
    SampleFile(f"{CASE}-t1c.nii.gz", "T1c", "4399faadcc45c8a4541313cdf88aced7d835ed59ac3078d950e0eac293d603f5"),
    SampleFile(f"{CASE}-t2w.nii.gz", "T2", "4cd389cc57d12134a30a898c66532228126b9a7d0600ee578e82a32144528b51"),
    SampleFile(f"{CASE}-t2f.nii.gz", "FLAIR", "82aed8546af5e6d8d94fd91c56227abdcf6120130390d1556c4342a208980604"),
)


def registration_arguments(thumbnail: str | None = None) -> dict:
    """The keyword arguments of `SampleData.SampleDataLogic.registerCustomSampleDataSource` for the case.

    >>> arguments = registration_arguments()
    >>> arguments["category"], arguments["sampleName"], arguments["checksums"][0][:7]
    ('MRImputation', 'BraTS-GLI-00001-000', 'SHA256:')
    """
    return {
        "category": CATEGORY,
        "sampleName": CASE,
        "thumbnailFileName": thumbnail,
        "uris": [f.url for f in FILES],
        "fileNames": [f.file_name for f in FILES],
        "nodeNames": [f.node_name for f in FILES],
        "checksums": [f"SHA256:{f.sha256}" for f in FILES],
        "loadFileTypes": ["VolumeFile"] * len(FILES),
    }


def register_sample_data(thumbnail: str | None = None) -> None:
    """Inside Slicer, on start-up completed: add the case to the Sample Data module (downloaded only when clicked)."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(**registration_arguments(thumbnail))
