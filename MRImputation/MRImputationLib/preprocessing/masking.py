"""Brain and head masks for skull-stripped and non-stripped MRI.

Skull-stripped inputs (background exactly zero, or a constant minimum) give *exact* masks: the
voxels that are not background in any of the co-registered volumes, small enclosed holes filled,
largest connected component.

Non-stripped inputs get an *approximation*, not a skull stripper:
- head: threshold halfway between the air level and Otsu's threshold of a smoothed image, holes
  filled (per slice along every axis, then in 3-D), largest component, closed by 4 mm;
- brain: inside the head, peel 4 mm of scalp, keep tissue brighter than half the median of the
  deep head (this drops bone, air and dark CSF), cut thin bridges with a 4 mm opening, keep the
  piece that holds the deep core, close by 6 mm and fill holes.
It relies on the dark skull between scalp and brain, true on T1, T2, PD and FLAIR, and tends to
leave out the outer CSF where that is dark (T1, FLAIR). For an exact brain mask of a non-stripped
scan, strip it with a dedicated tool (e.g. HD-BET, SynthStrip) and give the stripped image.

Morphology radii are in millimetres (Euclidean distance maps that use the voxel spacing).
Non-stripped estimates run on a copy bin-averaged to about 2 mm voxels and are interpolated
back, so a 240×240×155 volume takes well under a second of CPU time.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from ..core.volume import Volume

WORK_SPACING_MM = 2.0  # voxel size of the working copy for non-stripped estimates
MAX_HOLE_ML = 10.0  # enclosed background pockets up to this volume are filled in stripped masks
BRAIN_METHODS = ("auto", "nonzero", "estimate")


def _background_value(array: np.ndarray) -> tuple[float, int]:
    """The value that fills a stripped image's background (0, or a constant minimum) and its count."""
    zeros = int(np.count_nonzero(array == 0))
    low = array.min()
    lows = int(np.count_nonzero(array == low)) if low != 0 else zeros
    return (0.0, zeros) if zeros >= lows else (float(low), lows)


def is_skull_stripped(volume: Volume) -> bool:
    """True when the volume looks skull-stripped: a large constant background around bright tissue.

    Criteria: at least 15 % of the voxels hold one constant background value (0 or the minimum),
    at least half of the volume's faces are that value, and fewer than 15 % of the other voxels
    are near-background dark (a non-stripped head padded with zeros keeps its noisy air there).

    >>> import numpy as np
    >>> a = np.zeros((20, 20, 20), np.int16); a[5:15, 5:15, 5:15] = 100
    >>> is_skull_stripped(Volume(a))
    True
    >>> is_skull_stripped(Volume(np.random.default_rng(0).random((20, 20, 20)) + a))
    False
    """
    array = volume.array
    value, count = _background_value(array)
    if count < 0.15 * array.size:
        return False
    faces = [array[0], array[-1], array[:, 0], array[:, -1], array[:, :, 0], array[:, :, -1]]
    on_faces = sum(int(np.count_nonzero(f == value)) for f in faces) / sum(f.size for f in faces)
    if on_faces < 0.5:
        return False
    rest = array[array != value]
    if rest.size == 0:
        return False
    rest = rest[:: max(1, rest.size // 200_000)].astype(np.float64) - value
    high = np.percentile(rest, 99)
    return high > 0 and float(np.mean(rest < 0.05 * high)) < 0.15


def brain_mask(volumes: Sequence[Volume] | Volume, method: str = "auto") -> Volume:
    """A uint8 0/1 brain mask on the grid of the first volume.

    method: "nonzero" (skull-stripped inputs: union of the non-background voxels of all volumes,
    resampled onto the first one's grid if needed, enclosed holes up to MAX_HOLE_ML filled, largest
    component), "estimate" (non-stripped: heuristic brain estimate from the first volume, see the
    module notes) or "auto" (nonzero when the first volume is_skull_stripped, else estimate).

    >>> import numpy as np
    >>> a = np.zeros((20, 20, 20), np.int16); a[5:15, 5:15, 5:15] = 100; a[9, 9, 9] = 0
    >>> int(brain_mask(Volume(a)).array.sum())
    1000
    """
    volumes = [volumes] if isinstance(volumes, Volume) else list(volumes)
    if not volumes:
        raise ValueError("brain_mask needs at least one volume")
    if method not in BRAIN_METHODS:
        raise ValueError(f"unknown brain mask method {method!r}; use one of {', '.join(BRAIN_METHODS)}")
    reference = volumes[0]
    if method == "auto":
        method = "nonzero" if is_skull_stripped(reference) else "estimate"
    mask = _nonzero_mask(volumes) if method == "nonzero" else _estimate_brain(reference)
    return reference.with_array(mask.astype(np.uint8), contrast="brain_mask")


def head_mask(volume: Volume) -> Volume:
    """A uint8 0/1 mask of the whole head (for stripped inputs: the non-background region).

    Non-stripped: threshold halfway between the air level and Otsu's threshold of a smoothed
    ~2 mm copy (Otsu alone drops thin or dim scalp), holes filled per slice (along every
    axis) and in 3-D, largest component, closed by 4 mm, filled again, resampled back to the
    volume's grid.

    >>> import numpy as np
    >>> z, y, x = np.mgrid[:40, :40, :40]
    >>> ball = (((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) < 15 ** 2) * 100.0
    >>> a = ball + np.random.default_rng(0).random(ball.shape) * 5
    >>> m = head_mask(Volume(a)).array
    >>> bool(m[ball > 0].all()), bool(m.sum() < 1.2 * (ball > 0).sum())  # the ball, within a voxel
    (True, True)
    """
    if is_skull_stripped(volume):
        mask = _nonzero_mask([volume])
    else:
        small, spacing, factors = _working_copy(volume)
        mask = _upsample(_head_small(small, spacing), factors, volume.shape)
    return volume.with_array(mask.astype(np.uint8), contrast="head_mask")


# --- skull-stripped inputs -------------------------------------------------------------------


def _nonzero_mask(volumes: list[Volume]) -> np.ndarray:
    reference = volumes[0]
    mask = np.zeros(reference.shape, bool)
    for volume in volumes:
        value, _ = _background_value(volume.array)
        foreground = volume.array != value
        if not volume.same_grid(reference):
            foreground = _resample_nearest(volume.with_array(foreground.astype(np.uint8)), reference) > 0
        mask |= foreground
    if not mask.any():
        return mask
    box = _bounding_box(mask, margin=1)
    inner = mask[box]
    labels, count = ndi.label(~inner)  # background pieces; those off the border are holes
    fill = np.bincount(labels.ravel(), minlength=count + 1) * np.prod(reference.spacing) / 1000.0 <= MAX_HOLE_ML
    fill[0] = False
    for axis in range(3):
        fill[np.take(labels, 0, axis=axis)] = fill[np.take(labels, -1, axis=axis)] = False
    result = np.zeros_like(mask)
    result[box] = _largest_component(inner | fill[labels])
    return result


def _resample_nearest(volume: Volume, reference: Volume) -> np.ndarray:
    import SimpleITK as sitk

    image = sitk.Resample(volume.to_sitk(), reference.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(image)


# --- non-stripped inputs: a ~2 mm working copy -----------------------------------------------


def _working_copy(volume: Volume) -> tuple[np.ndarray, tuple[float, ...], tuple[int, ...]]:
    """(array bin-averaged to ~2 mm voxels, its (z, y, x) spacing, the integer factors per axis)."""
    full_spacing = tuple(reversed(volume.spacing))
    factors = tuple(max(1, int(round(WORK_SPACING_MM / s))) for s in full_spacing)
    array = volume.array.astype(np.float32, copy=False)
    if max(factors) > 1:
        sizes = [max(1, n // f) for n, f in zip(array.shape, factors)]
        f = [min(f, n) for f, n in zip(factors, array.shape)]
        factors = tuple(f)
        array = array[: sizes[0] * f[0], : sizes[1] * f[1], : sizes[2] * f[2]]
        array = array.reshape(sizes[0], f[0], sizes[1], f[1], sizes[2], f[2]).mean(axis=(1, 3, 5))
    return array, tuple(s * f for s, f in zip(full_spacing, factors)), factors


def _upsample(mask: np.ndarray, factors, shape) -> np.ndarray:
    """Linear interpolation of a low-resolution 0/1 mask onto the full grid, thresholded at 0.5."""
    full = np.zeros(shape, bool)
    if not mask.any():
        return full
    box = _bounding_box(mask, margin=1)
    values = mask[box].astype(np.float32)
    target = []
    for axis, (f, part) in enumerate(zip(factors, box)):
        # a low voxel j averages full voxels j*f .. j*f+f-1: its centre is full index j*f + (f-1)/2
        start = 0 if part.start == 0 else part.start * f
        stop = shape[axis] if part.stop == mask.shape[axis] else part.stop * f
        coordinate = np.clip((np.arange(start, stop) - (f - 1) / 2) / f - part.start, 0, values.shape[axis] - 1)
        low = np.floor(coordinate).astype(int)
        high = np.minimum(low + 1, values.shape[axis] - 1)
        weight = (coordinate - low).astype(np.float32).reshape([-1 if a == axis else 1 for a in range(3)])
        values = np.take(values, low, axis=axis) * (1 - weight) + np.take(values, high, axis=axis) * weight
        target.append(slice(start, stop))
    full[tuple(target)] = values >= 0.5
    return full


def _head_small(array: np.ndarray, spacing) -> np.ndarray:
    from skimage.filters import threshold_otsu

    smooth = ndi.gaussian_filter(array, sigma=[1.0 / s for s in spacing])
    smooth = np.minimum(smooth, np.percentile(smooth, 99.5))
    otsu = threshold_otsu(smooth)
    air = float(np.median(smooth[smooth <= otsu]))
    threshold = air + 0.5 * (otsu - air)  # halfway between air and Otsu: keeps thin or dim scalp
    mask = _largest_component(_fill_holes(smooth > threshold))  # fill first: the scalp encloses the rest
    if not mask.any():
        return mask
    box = _bounding_box(mask, margin=1)
    mask[box] = _fill_holes(_close(mask[box], 4.0, spacing), per_slice=False)
    return mask


def _estimate_brain(volume: Volume) -> np.ndarray:
    array, spacing, factors = _working_copy(volume)
    head = _head_small(array, spacing)
    brain = np.zeros_like(head)
    if head.any():
        box = _bounding_box(head, margin=1)
        brain[box] = _brain_in_head(array[box], head[box], spacing)
    return _upsample(brain, factors, volume.shape)


def _brain_in_head(array: np.ndarray, head: np.ndarray, spacing) -> np.ndarray:
    depth = _distance_to(~head, spacing)
    core = depth > min(20.0, 0.5 * depth.max())  # deep inside the head: mostly brain
    smooth = ndi.gaussian_filter(array, sigma=[1.0 / s for s in spacing])
    threshold = 0.5 * float(np.median(smooth[core]))
    tissue = (depth > 4.0) & (smooth > threshold)  # peel the outer scalp, drop bone, air and dark CSF
    seeds = _erode(tissue, 4.0, spacing)  # an opening cuts thin bridges ...
    labels, count = ndi.label(seeds)
    overlap = np.bincount(labels[core], minlength=count + 1)
    overlap[0] = 0
    if not overlap.any():
        return core
    brain = _dilate(labels == int(np.argmax(overlap)), 4.0, spacing) & tissue  # ... and grows back
    return _fill_holes(_close(brain, 6.0, spacing)) & head


# --- morphology helpers (radii in mm; spacing in array (z, y, x) order) ---------------------


def _distance_to(target: np.ndarray, spacing) -> np.ndarray:
    """Euclidean distance (mm) from every voxel to the nearest `target` voxel (0 on it, inf if none).

    SimpleITK's Maurer transform: the same values as scipy's distance_transform_edt(~target),
    about three times faster.
    """
    import SimpleITK as sitk

    if not target.any():
        return np.full(target.shape, np.inf, np.float32)
    image = sitk.GetImageFromArray(target.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return np.maximum(sitk.GetArrayFromImage(distance), 0)


def _dilate(mask: np.ndarray, radius: float, spacing) -> np.ndarray:
    """Dilation by a closed ball of `radius` mm (a tolerance keeps float32 ties on the ball)."""
    return _distance_to(mask, spacing) <= radius + 1e-3


def _erode(mask: np.ndarray, radius: float, spacing) -> np.ndarray:
    """Erosion by a closed ball of `radius` mm."""
    return _distance_to(~mask, spacing) > radius + 1e-3


def _close(mask: np.ndarray, radius: float, spacing) -> np.ndarray:
    pad = [int(np.ceil(radius / s)) + 1 for s in spacing]
    padded = np.pad(mask, [(p, p) for p in pad])
    closed = _erode(_dilate(padded, radius, spacing), radius, spacing)
    return closed[tuple(slice(p, -p) for p in pad)] | mask


def _fill_holes(mask: np.ndarray, per_slice: bool = True) -> np.ndarray:
    """Fill holes per slice along each axis (sulci and ventricles open in 3-D), then in 3-D.

    A hole is a background component (4-connected within a slice, 6-connected in 3-D) that does
    not touch the border of its slice (or of the volume).
    """
    mask = mask.astype(bool)
    for axis in (0, 1, 2, None) if per_slice else (None,):
        if axis is None:
            structure = ndi.generate_binary_structure(3, 1)
        else:
            structure = np.zeros((3, 3, 3), bool)
            index = [slice(None)] * 3
            index[axis] = 1
            structure[tuple(index)] = ndi.generate_binary_structure(2, 1)
        labels, count = ndi.label(~mask, structure)
        if count == 0:
            continue
        outside = np.zeros(count + 1, bool)
        for face_axis in range(3):
            if face_axis != axis:
                outside[np.take(labels, 0, axis=face_axis)] = True
                outside[np.take(labels, -1, axis=face_axis)] = True
        outside[0] = True  # label 0 = mask voxels, kept as they are
        mask = mask | ~outside[labels]
    return mask


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndi.label(mask)
    if count <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(0, hits[0] - margin), min(mask.shape[axis], hits[-1] + 1 + margin)))
    return tuple(box)
