"""Preprocessing as a model was trained: what imputation must repeat, carried from export to imputation.

A bundle stores it in two of `bundle.json`'s entries (`normalization`, and `preprocessing` with
`n4`, `registration` and `slicing`); this record is the one type that writes and reads them, so
no key is renamed by hand on the way (the preprocessing manifest calls the registration kind
`registration_kind`; bundles call it `registration`).

>>> record = PreprocessingAsTrained(n4=False, registration="affine")
>>> PreprocessingAsTrained.from_bundle_fields(**record.bundle_fields()) == record
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..preprocessing.normalization import NormalizationConfig
from .slicing import SlicingConfig


@dataclass
class PreprocessingAsTrained:
    """N4 on or off, the registration kind, the normalization and the slicing of the training data."""

    n4: bool = True
    registration: str = "rigid"
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    slicing: SlicingConfig = field(default_factory=SlicingConfig)

    @classmethod
    def from_training(cls, manifest_config: dict, normalization: dict, slicing: SlicingConfig) -> "PreprocessingAsTrained":
        """From a preprocessing manifest's `config`, the normalization record the slices went through
        and the run's slicing."""
        return cls(n4=manifest_config.get("n4", True), registration=manifest_config.get("registration_kind", "rigid"),
                   normalization=NormalizationConfig.from_record(normalization), slicing=slicing)

    def bundle_fields(self) -> dict:
        """`bundle.json`'s `normalization` and `preprocessing` entries."""
        return {"normalization": self.normalization.to_record(),
                "preprocessing": {"n4": self.n4, "registration": self.registration, "slicing": self.slicing.to_dict()}}

    @classmethod
    def from_bundle_fields(cls, normalization: dict, preprocessing: dict, image_size: int | None = None
                           ) -> "PreprocessingAsTrained":
        """Read back what `bundle_fields` wrote; absent keys keep the defaults (slices of `image_size`)."""
        default_slicing = {"size": image_size} if image_size else {}
        return cls(n4=preprocessing.get("n4", True), registration=preprocessing.get("registration", "rigid"),
                   normalization=NormalizationConfig.from_record(normalization or {}),
                   slicing=SlicingConfig.from_dict(preprocessing.get("slicing", default_slicing)))
