"""Quality-control pictures (PNG): contrasts side by side, bias correction, registration overlays.

Every panel is an axial slice in radiological orientation with anterior up (patient's right on
the picture's left), whatever the file's axis order: volumes are first reoriented to LPS with
SimpleITK's DICOMOrient, then drawn in millimetres, so volumes on different grids line up by
physical position (no resampling). Grey levels use a robust 1st–99th percentile window.

Figures use matplotlib's Agg canvas directly (no pyplot, no global backend switch) and are
written atomically; nothing half-written is left behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_file
from ..core.volume import Volume

PANEL_INCHES = 2.3
DPI = 110
BACKGROUND = "black"
TEXT = "white"
EDGE_COLOR = (1.0, 0.25, 0.2)  # moving image's edges in registration overlays


class _View:
    """A volume reoriented to LPS: array (z, y, x), x → patient left, y → posterior, z → superior."""

    def __init__(self, volume: Volume):
        import SimpleITK as sitk

        image = sitk.DICOMOrient(volume.to_sitk(), "LPS")
        self.array = sitk.GetArrayFromImage(image)
        self.spacing = np.asarray(image.GetSpacing(), float)
        self.origin = np.asarray(image.GetOrigin(), float)

    def positions(self, axis: int) -> np.ndarray:
        """Physical coordinates (mm) of the voxel centres along x (0), y (1) or z (2)."""
        return self.origin[axis] + np.arange(self.array.shape[2 - axis]) * self.spacing[axis]

    def axial(self, z_mm: float) -> np.ndarray | None:
        k = int(round((z_mm - self.origin[2]) / self.spacing[2]))
        return self.array[k] if 0 <= k < self.array.shape[0] else None

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """imshow extent (left, right, bottom, top) for origin="upper": anterior (small y) on top."""
        x, y = self.positions(0), self.positions(1)
        hx, hy = self.spacing[0] / 2, self.spacing[1] / 2
        return (x[0] - hx, x[-1] + hx, y[-1] + hy, y[0] - hy)

    def box(self, margin: float = 4.0) -> tuple[float, float, float, float, float, float]:
        """(x0, x1, y0, y1, z0, z1) in mm around the non-zero voxels (the whole grid if none)."""
        mask = self.array != 0
        limits = []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != 2 - axis)
            hits = np.flatnonzero(mask.any(axis=other)) if mask.any() else np.array([0, mask.shape[2 - axis] - 1])
            p = self.positions(axis)
            limits += [p[hits[0]] - margin, p[hits[-1]] + margin]
        return tuple(limits)


def _window(volume: Volume, mask: Volume | None) -> tuple[float, float]:
    """1st and 99th percentiles inside the mask (same grid), else of the non-zero voxels."""
    array = volume.array
    if mask is not None and mask.same_grid(volume):
        values = array[mask.array > 0]
    else:
        values = array[array != 0]
    if values.size < 0.01 * array.size:
        values = array.ravel()
    values = values[:: max(1, values.size // 500_000)].astype(np.float64)
    low, high = np.percentile(values, [1, 99])
    if not high > low:  # e.g. a label map: fall back to the full range
        low, high = float(array.min()), float(array.max())
    return float(low), float(high if high > low else low + 1.0)


def _slice_positions(box, count: int) -> list[float]:
    z0, z1 = box[4], box[5]
    fractions = [0.5] if count == 1 else np.linspace(0.3, 0.75, count)[::-1]  # top of the head first
    return [float(z0 + f * (z1 - z0)) for f in fractions]


def _grid(rows: int, cols: int, box, title: str, col_titles, right: float = 0.0, caption: str = ""):
    """A black figure with rows × cols image axes sized to the crop box, no wasted margins."""
    from matplotlib.figure import Figure

    width_mm, height_mm = box[1] - box[0], box[3] - box[2]
    panel_w = PANEL_INCHES
    panel_h = PANEL_INCHES * float(np.clip(height_mm / width_mm, 0.4, 2.5))
    top = 0.28 + (0.36 if title else 0.0)
    bottom = 0.26 if caption else 0.0
    fig_w, fig_h = cols * panel_w + right, rows * panel_h + top + bottom
    fig = Figure(figsize=(fig_w, fig_h), dpi=DPI, facecolor=BACKGROUND)
    axes = []
    for r in range(rows):
        row = []
        for c in range(cols):
            y = (bottom + (rows - 1 - r) * panel_h) / fig_h
            ax = fig.add_axes([c * panel_w / fig_w, y, panel_w / fig_w, panel_h / fig_h])
            ax.set_facecolor(BACKGROUND)
            ax.set_axis_off()
            ax.set_xlim(box[0], box[1])
            ax.set_ylim(box[3], box[2])  # anterior (small y) on top
            row.append(ax)
        axes.append(row)
    if title:
        fig.text(0.5, 1 - 0.2 / fig_h, title, color=TEXT, ha="center", va="center", fontsize=11, fontweight="bold")
    if caption:
        fig.text(0.5, 0.13 / fig_h, caption, color="#cccccc", ha="center", va="center", fontsize=8)
    for c, name in enumerate(col_titles):
        x, y = (c + 0.5) * panel_w / fig_w, 1 - (top - 0.13) / fig_h
        fig.text(x, y, name, color=TEXT, ha="center", va="center", fontsize=9.5)
    return fig, axes


def _label(ax, text: str) -> None:
    ax.text(0.02, 0.02, text, transform=ax.transAxes, color="#bbbbbb", fontsize=7, ha="left", va="bottom")


def _show(ax, view: _View, z_mm: float, window, cmap="gray") -> np.ndarray | None:
    image = view.axial(z_mm)
    if image is None:
        ax.text(0.5, 0.5, "outside", transform=ax.transAxes, color="#777777", ha="center", va="center", fontsize=8)
        return None
    ax.imshow(image, cmap=cmap, vmin=window[0], vmax=window[1], extent=view.extent, origin="upper")
    return image


def _save(fig, path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor=fig.get_facecolor())
    fig.clear()
    return path


def contrasts_figure(
    volumes: dict[str, Volume], path: str | os.PathLike, slices: int = 3, mask: Volume | None = None, title: str = ""
) -> Path:
    """Rows: `slices` axial slices across the brain (from the mask's extent; by default the brain
    mask of the first volume); columns: the contrasts. Returns the PNG's path.

    >>> import numpy as np, tempfile, pathlib
    >>> a = np.zeros((20, 30, 30), np.float32); a[4:16, 5:25, 8:22] = 1
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     contrasts_figure({"T1": Volume(a)}, pathlib.Path(folder) / "c.png", slices=1).stat().st_size > 0
    True
    """
    if not volumes or slices < 1:
        raise ValueError("contrasts_figure needs at least one volume and one slice")
    from .masking import brain_mask, head_mask, is_skull_stripped

    first = next(iter(volumes.values()))
    if mask is None:
        mask = brain_mask(first)
    box = _View(mask).box()
    if not is_skull_stripped(first):  # show the whole head in-plane, slices still across the brain
        box = _View(head_mask(first)).box()[:4] + box[4:]
    fig, axes = _grid(slices, len(volumes), box, title, list(volumes))
    for c, volume in enumerate(volumes.values()):
        view, window = _View(volume), _window(volume, mask)
        for r, z in enumerate(_slice_positions(box, slices)):
            _show(axes[r][c], view, z, window)
            if c == 0:
                _label(axes[r][c], f"S {z:+.0f} mm")
    return _save(fig, path)


def bias_figure(before: Volume, after: Volume, field: Volume, path: str | os.PathLike, title: str = "") -> Path:
    """Two axial slices: before N4 | after N4 | the estimated bias field (masked to the head, with a
    colour bar). Returns the PNG's path."""
    from .masking import head_mask

    head = head_mask(before)
    box = _View(head).box()
    fig, axes = _grid(2, 3, box, title, ["before", "after", "bias field"], right=0.75)
    field_view = _View(field.with_array(np.where(_on_grid(head, field), field.array, np.nan).astype(np.float32)))
    inside = field_view.array[np.isfinite(field_view.array)]
    field_window = tuple(np.percentile(inside, [1, 99])) if inside.size else (0.0, 1.0)
    cmap = _colormap("magma")
    shown = [(_View(before), _window(before, head)), (_View(after), _window(after, head))]
    for r, z in enumerate(_slice_positions(box, 2)):
        for c, (view, window) in enumerate(shown):
            _show(axes[r][c], view, z, window)
        _show(axes[r][2], field_view, z, field_window, cmap=cmap)
        _label(axes[r][0], f"S {z:+.0f} mm")
    _colorbar(fig, axes, field_window, cmap)
    return _save(fig, path)


def _colorbar(fig, axes, window, cmap, label: str = "") -> None:
    """A colour bar beside the last column of `axes`, in the figure's right margin."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig_w, fig_h = fig.get_size_inches()
    low, high = axes[-1][-1].get_position().y0 + 0.15 / fig_h, axes[0][-1].get_position().y1 - 0.15 / fig_h
    bar = fig.add_axes([1 - 0.62 / fig_w, low, 0.12 / fig_w, high - low])
    colorbar = fig.colorbar(ScalarMappable(Normalize(*window), cmap), cax=bar)
    colorbar.ax.tick_params(colors=TEXT, labelsize=7)
    colorbar.outline.set_edgecolor("#888888")
    if label:
        colorbar.set_label(label, color=TEXT, fontsize=7)


def error_figure(real: Volume, synthetic: Volume, error: Volume, path: str | os.PathLike, title: str = "",
                 mask: Volume | None = None) -> Path:
    """Three axial slices: real | synthetic | absolute error (magma, with a colour bar), anterior up."""
    from .masking import brain_mask

    mask = mask if mask is not None else brain_mask([real])
    box = _View(mask).box()
    fig, axes = _grid(3, 3, box, title, ["real", "synthetic", "|synthetic − real|"], right=0.9)
    window = _window(real, mask)
    inside = error.array[mask.array > 0] if mask.same_grid(error) else error.array.ravel()
    error_window = (0.0, float(np.percentile(inside, 99)) if inside.size else 1.0)
    cmap = _colormap("magma")
    views = [_View(real), _View(synthetic), _View(error)]
    for r, z in enumerate(_slice_positions(box, 3)):
        _show(axes[r][0], views[0], z, window)
        _show(axes[r][1], views[1], z, window)
        _show(axes[r][2], views[2], z, error_window, cmap=cmap)
        _label(axes[r][0], f"S {z:+.0f} mm")
    _colorbar(fig, axes, error_window, cmap, "absolute error")
    return _save(fig, path)


def registration_figure(
    fixed: Volume, moving_before: Volume | None, moving_after: Volume, path: str | os.PathLike, title: str = ""
) -> Path:
    """The fixed image in grey with the moving image's edges (Canny) in red, before and after
    registration, on three axial slices. Each volume is drawn on its own grid (no resampling)."""
    from .masking import head_mask

    head = head_mask(fixed)
    box = _View(head).box()
    movings = [("before", moving_before)] if moving_before is not None else []
    movings.append(("after", moving_after))
    caption = "grey: fixed image · red: edges of the moving image"
    fig, axes = _grid(3, len(movings), box, title, [f"{name} registration" for name, _ in movings], caption=caption)
    fixed_view, fixed_window = _View(fixed), _window(fixed, head)
    for c, (_, moving) in enumerate(movings):
        view, window = _View(moving), _window(moving, None)
        for r, z in enumerate(_slice_positions(box, 3)):
            _show(axes[r][c], fixed_view, z, fixed_window)
            image = view.axial(z)
            if image is not None:
                edges = _edges(image, window, view.spacing[:2])
                axes[r][c].imshow(edges, extent=view.extent, origin="upper", interpolation="nearest")
            if c == 0:
                _label(axes[r][c], f"S {z:+.0f} mm")
    return _save(fig, path)


def _edges(image: np.ndarray, window, spacing) -> np.ndarray:
    """RGBA picture of the Canny edges of a slice (transparent elsewhere)."""
    from skimage.feature import canny

    scaled = np.clip((image.astype(np.float32) - window[0]) / (window[1] - window[0]), 0, 1)
    sigma = 1.5 / float(np.mean(spacing))
    edges = canny(scaled, sigma=sigma, low_threshold=0.08, high_threshold=0.2)
    rgba = np.zeros(image.shape + (4,), np.float32)
    rgba[edges] = (*EDGE_COLOR, 1.0)
    return rgba


def _on_grid(mask: Volume, volume: Volume) -> np.ndarray:
    if mask.same_grid(volume):
        return mask.array > 0
    from .masking import _resample_nearest

    return _resample_nearest(mask, volume) > 0


def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=BACKGROUND)
