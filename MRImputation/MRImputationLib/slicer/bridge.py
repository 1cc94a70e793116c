"""The MRML bridge: volume nodes <-> `Volume`s and files, output nodes, color and metrics tables.

`Volume` keeps ITK's physical frame (LPS, mm); Slicer's nodes map voxel indices to RAS. The two
differ by flipping the first two axes, so IJK->RAS = diag(-1, -1, 1) · [direction · diag(spacing) | origin].
Arrays keep their (k, j, i) = (z, y, x) order on both sides, so voxel values are never reordered
and every voxel keeps its physical position, for oblique directions and anisotropic spacing too.

`slicer` is imported inside the functions: this file loads without Slicer, and runs both inside
Slicer and on the `slicer-core` package (a bare `vtkMRMLScene`, no application).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ..core.errors import InputError
from ..core.volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
ATTRIBUTE_PREFIX = "MRImputation."
ERROR_COLOR_NAMES = ("Magma", "Inferno")  # perceptual tables Slicer ships; used when present
OWN_ERROR_COLOR_NAME = "MRImputation Magma"


def ijk_to_ras(volume: Volume) -> np.ndarray:
    """The 4x4 IJK->RAS matrix of a volume whose geometry is in LPS.

    >>> ijk_to_ras(Volume(np.zeros((2, 2, 2)), spacing=(1, 2, 3), origin=(10, 20, 30)))[:3].tolist()
    [[-1.0, 0.0, 0.0, -10.0], [0.0, -2.0, 0.0, -20.0], [0.0, 0.0, 3.0, 30.0]]
    """
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ volume.direction_matrix @ np.diag(volume.spacing)
    matrix[:3, 3] = LPS_TO_RAS @ np.asarray(volume.origin)
    return matrix


def geometry_from_ijk_to_ras(matrix: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """(spacing, origin, direction) in LPS from a 4x4 IJK->RAS matrix (the inverse of `ijk_to_ras`)."""
    matrix = np.asarray(matrix, dtype=float)
    lps = LPS_TO_RAS @ matrix[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    if np.any(spacing <= 0):
        raise InputError("the volume's IJK-to-RAS matrix has a zero-length axis; its geometry is broken.")
    direction = lps / spacing
    origin = LPS_TO_RAS @ matrix[:3, 3]
    return tuple(spacing), tuple(origin), tuple(direction.ravel())


def _vtk_matrix(array: np.ndarray):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, float(array[row, column]))
    return matrix


def _numpy_matrix(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def node_ijk_to_world(node) -> np.ndarray:
    """IJK->RAS of `node` in world coordinates: its own matrix, then any linear parent transform."""
    import vtk

    local = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(local)
    matrix = _numpy_matrix(local)
    parent = node.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise InputError(f"{node.GetName()}: it is under a non-linear transform ({parent.GetName()}); "
                             "harden the transform (Data module, right-click > Harden transform) and try again.")
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        matrix = _numpy_matrix(to_world) @ matrix
    return matrix


def volume_from_node(node, contrast: str | None = None) -> Volume:
    """A copy of a scalar volume node's voxels with its exact geometry (parent linear transforms applied)."""
    import slicer

    if node is None or node.GetImageData() is None:
        raise InputError("no volume (or a volume without voxels) was given; pick a loaded scalar volume.")
    if node.GetImageData().GetNumberOfScalarComponents() != 1 or not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputError(f"{node.GetName()}: is not a single-component scalar volume (a color, vector or "
                         "tensor image); pick a grey-value MRI volume.")
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    spacing, origin, direction = geometry_from_ijk_to_ras(node_ijk_to_world(node))
    return Volume(array, spacing, origin, direction, contrast=contrast, source=node.GetName())


def update_node_from_volume(node, volume: Volume) -> None:
    """Replace a volume node's voxels and geometry by `volume`'s (the node keeps its display and name)."""
    import slicer

    node.SetIJKToRASMatrix(_vtk_matrix(ijk_to_ras(volume)))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))


def add_volume_node(volume: Volume, name: str, scene=None, label: bool = False):
    """A new scalar (or label map) volume node in `scene` (default slicer.mrmlScene) holding `volume`."""
    import slicer

    scene = scene or slicer.mrmlScene
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if label else "vtkMRMLScalarVolumeNode", name)
    update_node_from_volume(node, volume)
    node.CreateDefaultDisplayNodes()
    return node


def write_node(node, path: str | os.PathLike, contrast: str | None = None) -> Path:
    """Write a volume node to a NIfTI/NRRD file (through `Volume`, so the file's geometry is exact)."""
    from ..core.io import write_volume

    return write_volume(volume_from_node(node, contrast), path)


def load_node(path: str | os.PathLike, name: str | None = None, contrast: str | None = None, scene=None):
    """A new volume node from a file written by the command line (or any file SimpleITK reads)."""
    from ..core.io import read_volume

    volume = read_volume(path, contrast=contrast)
    return add_volume_node(volume, name or Path(path).name.split(".")[0], scene)


def set_attributes(node, attributes: dict) -> None:
    """Record provenance on a node as `MRImputation.<key>` attributes (saved with the scene)."""
    for key, value in attributes.items():
        node.SetAttribute(ATTRIBUTE_PREFIX + key, "" if value is None else str(value))


def get_attributes(node) -> dict:
    """The `MRImputation.<key>` attributes of a node, without the prefix."""
    names = node.GetAttributeNames() or ()
    return {n[len(ATTRIBUTE_PREFIX):]: node.GetAttribute(n) for n in names if n.startswith(ATTRIBUTE_PREFIX)}


def window_level(array: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """(minimum, maximum) of a display window: percentiles of the non-zero voxels, never empty.

    >>> window_level(np.array([[[0, 1, 2, 3, 4, 100]]]), 0, 100)
    (1.0, 100.0)
    """
    values = array[np.nonzero(array)] if np.any(array) else np.ravel(array)
    lo, hi = (float(v) for v in np.percentile(values.astype(np.float64), [low, high]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def set_display(node, window: tuple[float, float] | None = None, color_node_id: str | None = None,
                hide_below: float | None = None) -> None:
    """Fixed window/level (robust percentiles unless given), a color table, and transparency below a value."""
    import slicer

    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    low, high = window or window_level(slicer.util.arrayFromVolume(node))
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(low, high)
    if color_node_id:
        display.SetAndObserveColorNodeID(color_node_id)
    if hide_below is not None:
        display.SetLowerThreshold(hide_below)
        display.SetUpperThreshold(max(high, hide_below) * 1e6 + 1.0)
        display.ApplyThresholdOn()


def study_item(nodes: Iterable, scene=None) -> int:
    """The subject-hierarchy item that holds the first of `nodes` that is in the hierarchy (0 if none).

    Usually a study; inputs loaded from DICOM sit in one, files loaded by hand sit at the scene level.
    """
    import slicer

    scene = scene or slicer.mrmlScene
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if hierarchy is None:
        return 0
    for node in nodes:
        item = hierarchy.GetItemByDataNode(node) if node is not None else 0
        if item:
            parent = hierarchy.GetItemParent(item)
            return parent if parent != hierarchy.GetSceneItemID() else 0
    return 0


def place_in_hierarchy(node, parent_item: int, scene=None) -> int:
    """Put `node` under `parent_item` (0: the scene) in the subject hierarchy; returns its item."""
    import slicer

    scene = scene or slicer.mrmlScene
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    parent = parent_item or hierarchy.GetSceneItemID()
    item = hierarchy.GetItemByDataNode(node)
    if not item:  # Slicer's plugins add items for new nodes; a bare scene (slicer-core) does not
        item = hierarchy.CreateItem(parent, node)
    hierarchy.SetItemParent(item, parent)
    return item


def add_output_node(volume: Volume, name: str, attributes: dict, inputs: Iterable = (), scene=None,
                    window: tuple[float, float] | None = None, color_node_id: str | None = None,
                    hide_below: float | None = None):
    """A new output volume node: named (a synthetic one says so), provenance attributes set, in the inputs'
    study, marked as derived for DICOM export (`mark_as_derived`), windowed."""
    if attributes.get("kind") == "synthetic" and "synthetic" not in name.lower():
        name = f"{name} (synthetic)"
    node = add_volume_node(volume, name, scene)
    set_attributes(node, attributes)
    item = place_in_hierarchy(node, study_item(list(inputs), scene), scene)
    mark_as_derived(node, item, attributes, scene)
    set_display(node, window=window, color_node_id=color_node_id, hide_below=hide_below)
    return node


def mark_as_derived(node, item: int, attributes: dict, scene=None) -> None:
    """The DICOM series tags of an output (core/labels.py: SeriesDescription says SYNTHETIC, ImageType
    DERIVED\\SECONDARY\\SYNTHETIC, Modality MR, Manufacturer, Model) as "DICOM.<Tag>" attributes of its
    subject-hierarchy item, where Slicer's DICOM export reads a series' tags, and of the node itself."""
    import slicer

    from ..core.labels import IMAGE_TYPES, dicom_series_tags

    kind = attributes.get("kind")
    if kind not in IMAGE_TYPES:
        return
    model = " ".join(str(attributes.get(k) or "") for k in ("model", "modelVersion")).strip()
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene or slicer.mrmlScene)
    for tag, value in dicom_series_tags(attributes.get("contrast") or "volume", kind, model).items():
        node.SetAttribute(f"DICOM.{tag}", value)
        if hierarchy is not None and item:
            hierarchy.SetItemAttribute(item, f"DICOM.{tag}", value)


def _anchor_colors() -> np.ndarray:
    # matplotlib's magma at 9 evenly spaced points; interpolated only where matplotlib is missing.
    return np.array([[0.001, 0.000, 0.014], [0.113, 0.065, 0.277], [0.316, 0.071, 0.485],
                     [0.513, 0.148, 0.508], [0.716, 0.215, 0.475], [0.904, 0.316, 0.384],
                     [0.989, 0.537, 0.380], [0.996, 0.776, 0.537], [0.987, 0.991, 0.750]])


def magma_colors(count: int = 256) -> np.ndarray:
    """`count` RGB rows (0..1) of the perceptually uniform magma map (dark = small error)."""
    try:
        from matplotlib import colormaps

        return np.asarray(colormaps["magma"].resampled(count)(np.linspace(0, 1, count)))[:, :3]
    except ImportError:
        anchors = _anchor_colors()
        positions = np.linspace(0, 1, len(anchors))
        samples = np.linspace(0, 1, count)
        return np.stack([np.interp(samples, positions, anchors[:, c]) for c in range(3)], axis=1)


def error_color_node(scene=None):
    """Slicer's own Magma/Inferno table if the scene has one, else (once) our own magma table node."""
    import slicer

    scene = scene or slicer.mrmlScene
    by_name = {}
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLColorNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLColorNode")
        by_name.setdefault(node.GetName(), node)
    for name in (*ERROR_COLOR_NAMES, OWN_ERROR_COLOR_NAME):
        if name in by_name:
            return by_name[name]
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", OWN_ERROR_COLOR_NAME)
    node.SetTypeToUser()
    colors = magma_colors(256)
    node.SetNumberOfColors(len(colors))
    node.GetLookupTable().SetTableRange(0, len(colors) - 1)
    for index, (r, g, b) in enumerate(colors):
        node.SetColor(index, f"error {index}", float(r), float(g), float(b), 1.0)
    node.SetAttribute("Category", "MRImputation")
    return node


def table_node(rows: list[dict], name: str, columns: list[str] | None = None, scene=None):
    """A table node from a list of dicts (one row each); numbers stay numbers, the rest becomes text."""
    import slicer
    import vtk

    scene = scene or slicer.mrmlScene
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    for column in columns:
        numeric = bool(rows) and all(isinstance(r.get(column), (int, float)) and not isinstance(r.get(column), bool)
                                     for r in rows)
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(column)
        array.SetNumberOfTuples(len(rows))
        for index, row in enumerate(rows):
            value = row.get(column)
            if numeric:
                array.SetValue(index, float(value))
            else:
                array.SetValue(index, _text(value))
        table.AddColumn(array)
    node.Modified()
    return node


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


METRIC_ROWS = (  # (key in compare_volumes' metrics, label, unit) in the order EVALUATION.md lists them
    ("psnr", "PSNR", "dB"),
    ("ssim", "SSIM", ""),
    ("mae", "MAE", "units of the real volume's 99.5th percentile"),
    ("mse", "MSE", "same units, squared"),
    ("legacy_psnr", "PSNR (legacy MM-GAN, whole slice)", "dB"),
    ("legacy_ssim", "SSIM (legacy MM-GAN, whole slice)", ""),
)


def metrics_rows(metrics: dict) -> list[dict]:
    """The rows of the metrics table: project metrics first, the legacy MM-GAN ones marked as such.

    >>> [r["metric"] for r in metrics_rows({"ssim": 0.9, "psnr": 30.0})]
    ['PSNR', 'SSIM']
    """
    return [{"metric": label, "value": float(metrics[key]), "unit": unit}
            for key, label, unit in METRIC_ROWS if key in metrics and metrics[key] is not None]


def metrics_table_node(metrics: dict, name: str = "Error metrics", scene=None):
    """A table node with the error metrics of one synthetic volume against its real reference."""
    return table_node(metrics_rows(metrics), name, ["metric", "value", "unit"], scene)
