"""From a volume on the reference grid to the network's square axial slices, and back.

The array is first put in a fixed anatomical frame, whatever its storage order: the array axes are
permuted and flipped (no resampling) so that axis 0 runs inferior -> superior, rows run anterior ->
posterior (anterior at the top of a slice) and columns run right -> left (radiological view, LPS +x).
Which array axis plays which part comes from the direction matrix: the permutation whose axes are
best aligned with S, P and L. Each kept slice is then cut to a square box (square in millimetres,
so nothing is stretched; it may reach beyond the image, where it is padded with zeros) and resized
to S x S. `from_slices` undoes every step, so predictions land on the reference grid.

Resizing uses `torch.nn.functional.interpolate` (bilinear, `align_corners=False`, with
`antialias=True` when shrinking): its half-pixel convention maps the box onto the S x S grid and
back with the same pixel centres, it low-pass filters before shrinking (no aliasing), and it
resizes every slice and channel in one batched call. `scipy.ndimage.zoom` aligns corner pixel
centres instead (a slight scale mismatch with the half-pixel box) and does not anti-alias.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from ..core.errors import InputError
from ..core.volume import Volume

CROPS = ("brain", "full")
# Physical LPS component that each oriented axis follows: slices along S (2), rows along P (1), columns along L (0).
_TARGET_COMPONENT = (2, 1, 0)


@dataclass
class SlicingConfig:
    """How a model's slices are cut, in training and at inference (a bundle carries it). Faithful MM-GAN uses every slice of the whole plane (crop "full", skip_empty False).

    >>> SlicingConfig.from_dict(SlicingConfig(size=128).to_dict())
    SlicingConfig(size=128, crop='brain', skip_empty=True, margin_mm=8.0)
    """

    size: int = 256
    crop: str = "brain"
    skip_empty: bool = True
    margin_mm: float = 8.0

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise InputError(f"slicing crop {self.crop!r}: use one of {', '.join(CROPS)}.")
        if int(self.size) < 8:
            raise InputError(f"slice size {self.size}: use at least 8 pixels.")
        self.size, self.skip_empty, self.margin_mm = int(self.size), bool(self.skip_empty), float(self.margin_mm)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SlicingConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def axial_frame(direction) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """How to permute and flip a (z, y, x) array so that it is axial, anterior up.

    Returns `axis_order` (oriented axis k is array axis `axis_order[k]`) and `flips` (oriented axis
    k is reversed after the permutation).

    >>> axial_frame((1, 0, 0, 0, 1, 0, 0, 0, 1))
    ((0, 1, 2), (False, False, False))
    >>> axial_frame((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # a RAS-stored NIfTI as ITK reads it
    ((0, 1, 2), (False, True, True))
    >>> axial_frame((0, 0, 1, 1, 0, 0, 0, 1, 0))  # array z runs along LPS x, array y along z
    ((1, 2, 0), (False, False, False))
    """
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    # Column j of the direction matrix is the physical direction of index axis j (x, y, z);
    # array axis a is index axis 2 - a.
    alignment = np.abs(matrix)
    best = max(
        itertools.permutations(range(3)),
        key=lambda order: sum(alignment[_TARGET_COMPONENT[k], 2 - order[k]] for k in range(3)),
    )
    flips = tuple(bool(matrix[_TARGET_COMPONENT[k], 2 - best[k]] < 0) for k in range(3))
    return tuple(int(a) for a in best), flips


@dataclass
class SliceGeometry:
    """How one volume maps to the network's slices; JSON-serialisable with `to_dict`.

    `crop_box` is (row_start, row_stop, column_start, column_stop) in the oriented plane and may
    reach beyond it; `slice_range` is the half-open range of oriented slices fed to the network.

    >>> volume = Volume(np.zeros((4, 6, 6), np.float32))
    >>> g = plan_slices(volume, None, size=6, crop="full")
    >>> g.crop_box, g.slice_range, g.n_slices
    ((0, 6, 0, 6), (0, 4), 4)
    >>> SliceGeometry.from_dict(g.to_dict()) == g
    True
    """

    shape_zyx: tuple[int, int, int]
    axis_order: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    crop_box: tuple[int, int, int, int]
    size: int
    slice_range: tuple[int, int]

    def __post_init__(self) -> None:
        self.shape_zyx = tuple(int(v) for v in self.shape_zyx)
        self.axis_order = tuple(int(v) for v in self.axis_order)
        self.flips = tuple(bool(v) for v in self.flips)
        self.crop_box = tuple(int(v) for v in self.crop_box)
        self.size = int(self.size)
        self.slice_range = tuple(int(v) for v in self.slice_range)
        if sorted(self.axis_order) != [0, 1, 2]:
            raise ValueError(f"axis_order {self.axis_order} is not a permutation of (0, 1, 2)")
        r0, r1, c0, c1 = self.crop_box
        if r1 <= r0 or c1 <= c0 or self.size < 1:
            raise ValueError(f"empty crop box {self.crop_box} or size {self.size}")
        s0, s1 = self.slice_range
        if not 0 <= s0 < s1 <= self.oriented_shape[0]:
            raise ValueError(f"slice range {self.slice_range} outside 0..{self.oriented_shape[0]}")

    @property
    def oriented_shape(self) -> tuple[int, int, int]:
        """(slices, rows, columns) of the array once permuted to the axial frame."""
        return tuple(self.shape_zyx[a] for a in self.axis_order)

    @property
    def n_slices(self) -> int:
        return self.slice_range[1] - self.slice_range[0]

    @property
    def box_shape(self) -> tuple[int, int]:
        r0, r1, c0, c1 = self.crop_box
        return r1 - r0, c1 - c0

    def to_dict(self) -> dict:
        return {
            "shape_zyx": list(self.shape_zyx),
            "axis_order": list(self.axis_order),
            "flips": list(self.flips),
            "crop_box": list(self.crop_box),
            "size": self.size,
            "slice_range": list(self.slice_range),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SliceGeometry":
        return cls(**{k: data[k] for k in ("shape_zyx", "axis_order", "flips", "crop_box", "size", "slice_range")})


def _orient(arrays: np.ndarray, axis_order, flips) -> np.ndarray:
    """(C, z, y, x) -> (C, slices, rows, columns) in the axial frame (a view, no copy)."""
    oriented = arrays.transpose(0, *(1 + a for a in axis_order))
    for k, flip in enumerate(flips):
        if flip:
            oriented = np.flip(oriented, axis=1 + k)
    return oriented


def _box_around(start: float, stop: float, length: int) -> tuple[int, int]:
    """`length` voxels centred on the continuous interval [start, stop)."""
    first = int(math.floor((start + stop) / 2.0 - length / 2.0 + 0.5))
    return first, first + length


def plan_slices(
    volume: Volume,
    mask: np.ndarray | Volume | None,
    size: int,
    crop: str = "brain",
    skip_empty: bool = True,
    margin_mm: float = 8.0,
) -> SliceGeometry:
    """Plan the slices of `volume` (only its shape, spacing and direction are used).

    `crop="brain"`: a box square in millimetres around the mask's in-plane bounding box (over all
    slices) widened by `margin_mm` on each side; `crop="full"`: the whole plane, padded to a square.
    When that box fits in `size` x `size` voxels it is widened to exactly that, so slices are padded,
    never resampled (exactly invertible); only larger boxes are resized.
    `skip_empty` keeps only the slices from the first to the last one holding mask voxels. Without a
    mask, the whole plane and every slice are used.
    """
    if crop not in CROPS:
        raise InputError(f"crop {crop!r}: use one of {', '.join(CROPS)}.")
    if int(size) < 1:
        raise InputError(f"slice size {size}: must be a positive number of pixels.")
    axis_order, flips = axial_frame(volume.direction)
    shape = tuple(volume.shape)
    n_slices, height, width = (shape[a] for a in axis_order)
    # volume.spacing is in x, y, z order; array axis a has spacing[2 - a].
    row_mm, col_mm = (volume.spacing[2 - axis_order[k]] for k in (1, 2))

    oriented_mask = None
    if mask is not None:
        mask_array = mask.array if isinstance(mask, Volume) else np.asarray(mask)
        if mask_array.shape != shape:
            raise InputError(f"brain mask shape {mask_array.shape} differs from the volume's {shape}.")
        oriented_mask = _orient(mask_array[None] != 0, axis_order, flips)[0]
        if not oriented_mask.any() and (skip_empty or crop == "brain"):
            raise InputError("the brain mask is empty, so no slice holds brain; check the mask or use crop='full'.")

    if crop == "brain" and oriented_mask is not None:
        rows = np.flatnonzero(oriented_mask.any(axis=(0, 2)))
        cols = np.flatnonzero(oriented_mask.any(axis=(0, 1)))
        r_start, r_stop, c_start, c_stop = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        side_mm = max((r_stop - r_start) * row_mm, (c_stop - c_start) * col_mm) + 2.0 * float(margin_mm)
    else:
        r_start, r_stop, c_start, c_stop = 0, height, 0, width
        side_mm = max(height * row_mm, width * col_mm)
    box_rows = max(1, int(round(side_mm / row_mm)))
    box_cols = max(1, int(round(side_mm / col_mm)))
    if crop == "full":
        box_rows, box_cols = max(box_rows, height), max(box_cols, width)
    if box_rows <= size and box_cols <= size:
        # The brain fits: pad to S x S instead of resizing, so voxels reach the network untouched.
        box_rows = box_cols = int(size)
    row_box = _box_around(r_start, r_stop, box_rows)
    col_box = _box_around(c_start, c_stop, box_cols)

    if skip_empty and oriented_mask is not None:
        kept = np.flatnonzero(oriented_mask.any(axis=(1, 2)))
        slice_range = (int(kept[0]), int(kept[-1]) + 1)
    else:
        slice_range = (0, n_slices)
    return SliceGeometry(shape, axis_order, flips, (*row_box, *col_box), int(size), slice_range)


def _resize(stack: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize (N, C, h, w) float32 to (N, C, *shape): bilinear, half-pixel centres, anti-aliased when shrinking."""
    if tuple(stack.shape[2:]) == tuple(shape):
        return np.asarray(stack, dtype=np.float32)  # callers only read it
    import torch
    import torch.nn.functional as F

    shrinking = shape[0] < stack.shape[2] or shape[1] < stack.shape[3]
    with torch.no_grad():
        array = np.ascontiguousarray(stack, dtype=np.float32)
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
        resized = F.interpolate(tensor, size=tuple(shape), mode="bilinear", align_corners=False, antialias=shrinking)
    return resized.numpy()


def _overlap(start: int, stop: int, length: int) -> tuple[slice, slice]:
    """(slice inside the box, slice inside the image) of the box [start, stop) over [0, length)."""
    first, last = max(start, 0), min(stop, length)
    if last <= first:
        return slice(0, 0), slice(0, 0)
    return slice(first - start, last - start), slice(first, last)


def to_slices(arrays: np.ndarray, geometry: SliceGeometry) -> np.ndarray:
    """(C, z, y, x) volumes on the reference grid -> (Z', C, S, S) float32 network slices."""
    arrays = np.asarray(arrays)
    if arrays.ndim != 4 or tuple(arrays.shape[1:]) != geometry.shape_zyx:
        raise ValueError(f"expected (C, {', '.join(map(str, geometry.shape_zyx))}) arrays, got shape {arrays.shape}")
    s0, s1 = geometry.slice_range
    oriented = _orient(arrays, geometry.axis_order, geometry.flips)[:, s0:s1]
    _, _, height, width = oriented.shape
    r0, r1, c0, c1 = geometry.crop_box
    box = np.zeros((s1 - s0, arrays.shape[0], r1 - r0, c1 - c0), np.float32)
    box_rows, image_rows = _overlap(r0, r1, height)
    box_cols, image_cols = _overlap(c0, c1, width)
    box[:, :, box_rows, box_cols] = oriented[:, :, image_rows, image_cols].transpose(1, 0, 2, 3)
    return np.ascontiguousarray(_resize(box, (geometry.size, geometry.size)))


def mask_to_slices(mask: np.ndarray, geometry: SliceGeometry) -> np.ndarray:
    """A (z, y, x) mask -> (Z', S, S) uint8, through the same resizing (then threshold at one half)."""
    slices = to_slices((np.asarray(mask) != 0).astype(np.float32)[None], geometry)[:, 0]
    return (slices >= 0.5).astype(np.uint8)


def from_slices(slices: np.ndarray, geometry: SliceGeometry, fill: float = 0.0) -> np.ndarray:
    """(Z', C, S, S) network slices -> (C, z, y, x) float32 on the reference grid.

    Voxels outside the crop box and slices that were not fed to the network get `fill`.
    """
    slices = np.asarray(slices)
    expected = (geometry.n_slices, geometry.size, geometry.size)
    if slices.ndim != 4 or (slices.shape[0], *slices.shape[2:]) != expected:
        raise ValueError(f"expected ({expected[0]}, C, {geometry.size}, {geometry.size}) slices, got {slices.shape}")
    channels = slices.shape[1]
    box = _resize(slices, geometry.box_shape)
    _, height, width = geometry.oriented_shape
    volumes = np.full((channels, *geometry.shape_zyx), fill, np.float32)
    # Written through the oriented view, so the result is already in the grid's own layout.
    oriented = _orient(volumes, geometry.axis_order, geometry.flips)
    r0, r1, c0, c1 = geometry.crop_box
    box_rows, image_rows = _overlap(r0, r1, height)
    box_cols, image_cols = _overlap(c0, c1, width)
    s0, s1 = geometry.slice_range
    oriented[:, s0:s1, image_rows, image_cols] = box[:, :, box_rows, box_cols].transpose(1, 0, 2, 3)
    return volumes


def context_offsets(k: int) -> list[int]:
    """The neighbours a 2.5-D network is given, in channel-group order: -1, +1, -2, +2, ... up to k.

    >>> context_offsets(2)
    [-1, 1, -2, 2]
    """
    return [d for i in range(1, k + 1) for d in (-i, i)]


def with_context(slices: np.ndarray, k: int) -> np.ndarray:
    """(Z, C, S, S) consecutive network slices -> (Z, C·(1 + 2k), S, S): each slice's own channels, then those
    of its neighbours at `context_offsets(k)`; zeros for a neighbour beyond the first or last slice.

    >>> x = np.arange(3, dtype=np.float32).reshape(3, 1, 1, 1)
    >>> with_context(x, 1)[:, :, 0, 0].tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 2.0], [2.0, 1.0, 0.0]]
    """
    slices = np.asarray(slices, np.float32)
    if k == 0:
        return slices
    n = slices.shape[0]
    groups = [slices]
    for d in context_offsets(k):
        shifted = np.zeros_like(slices)
        if d < 0:
            shifted[-d:] = slices[: n + d]
        else:
            shifted[: n - d] = slices[d:]
        groups.append(shifted)
    return np.ascontiguousarray(np.concatenate(groups, axis=1))
