"""`Volume`: voxels with their geometry and contrast name, the one currency of the pipeline.

Arrays are in SimpleITK's order (z, y, x); spacing, origin and direction are in ITK's physical
frame (LPS, millimetres), exactly as SimpleITK reports them. Conversions to Slicer's RAS happen
only in the MRML bridge.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk


@dataclass
class Volume:
    """A 3-D scalar image and where it lies in space.

    >>> import numpy as np
    >>> v = Volume(np.zeros((4, 5, 6), np.float32), spacing=(1.0, 1.0, 2.0), contrast="T1")
    >>> v.shape, v.size_xyz
    ((4, 5, 6), (6, 5, 4))
    >>> v.index_to_physical((0, 0, 1))
    array([0., 0., 2.])
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    contrast: str | None = None
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"a Volume holds a 3-D array, got shape {self.array.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = tuple(float(d) for d in self.direction)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        return tuple(reversed(self.array.shape))

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_to_physical(self, index_xyz) -> np.ndarray:
        """Physical (LPS, mm) position of voxel index (i, j, k) in x, y, z order; works on (..., 3) arrays."""
        ijk = np.asarray(index_xyz, dtype=float)
        return (ijk * np.asarray(self.spacing)) @ self.direction_matrix.T + np.asarray(self.origin)

    def with_array(self, array: np.ndarray, contrast: str | None = None) -> "Volume":
        """The same geometry with other voxels (and optionally another contrast name)."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from the volume's {self.array.shape}")
        return replace(self, array=array, contrast=contrast if contrast is not None else self.contrast)

    def same_grid(self, other: "Volume", tolerance: float = 1e-4) -> bool:
        """True when both volumes sample the same physical grid."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tolerance)
            and np.allclose(self.origin, other.origin, atol=tolerance * 10)
            and np.allclose(self.direction, other.direction, atol=tolerance)
        )

    def to_sitk(self) -> "sitk.Image":
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    @classmethod
    def from_sitk(cls, image: "sitk.Image", contrast: str | None = None, source: str | None = None) -> "Volume":
        import SimpleITK as sitk

        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing=image.GetSpacing(),
            origin=image.GetOrigin(),
            direction=image.GetDirection(),
            contrast=contrast,
            source=source,
        )

    def to_ants(self):
        """An ANTsPy image with this geometry (ANTs uses x, y, z array order)."""
        import ants

        return ants.from_numpy(
            np.ascontiguousarray(self.array.transpose(2, 1, 0)).astype(np.float32),
            origin=list(self.origin),
            spacing=list(self.spacing),
            direction=self.direction_matrix,
        )

    @classmethod
    def from_ants(cls, image, contrast: str | None = None, source: str | None = None) -> "Volume":
        return cls(
            array=np.ascontiguousarray(image.numpy().transpose(2, 1, 0)),
            spacing=tuple(image.spacing),
            origin=tuple(image.origin),
            direction=tuple(np.asarray(image.direction).ravel()),
            contrast=contrast,
            source=source,
        )
