"""Evaluation reports: JSON, CSV, a Markdown table and PNG figures, each written atomically.

Figures are drawn on `matplotlib.figure.Figure` objects directly (Agg), never through pyplot, so
writing a report neither needs a display nor changes the global backend (e.g. inside Slicer).
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_file, write_text
from .harness import METRICS, OVERALL, REGION_METRICS, EvaluationResult

ROW_FIELDS = ("method", "scenario", "scenario_label", "contrast", "subject", *METRICS)
UNITS_NOTE = (
    "Project metric (EVALUATION.md): brain voxels only, each true volume and its prediction divided by the "
    "truth's 99.5th percentile inside the brain mask and clipped to [0, 1]; PSNR in dB, SSIM 2-D Gaussian "
    "σ 1.5 averaged over brain voxels, MAE in those units. Cells: mean ± std over subjects (n)."
)
REGION_NOTE = (
    "Inside the tumour and in the rest of the brain (BraSyn's split), for subjects with a tumour mask (their "
    "`_seg` file): the project metric's units and its SSIM map, averaged over the tumour's brain voxels and over "
    "the other brain voxels. A model that is good on healthy tissue and blurs the tumour shows it here. "
    "Cells: tumour PSNR / SSIM / rest-of-brain PSNR / SSIM, mean ± std over subjects with a mask (n)."
)
HEADERS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mae": "MAE", "tumour_psnr": "tumour PSNR", "tumour_ssim": "tumour SSIM",
           "nontumour_psnr": "rest PSNR", "nontumour_ssim": "rest SSIM"}
LEGACY_NOTE = (
    "Legacy MM-GAN metric, for continuity only (never optimized for): per axial slice, whole image, each "
    "image divided by its own maximum; it hides global intensity errors and is inflated by background."
)


def _number(value: float, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def _mean_std(entry: dict, metric: str, digits: int) -> str:
    return f"{_number(entry[f'{metric}_mean'], digits)} ± {_number(entry[f'{metric}_std'], digits)}"


def _json_safe(value):
    """Non-finite floats as JSON can hold them: inf as the string "inf", NaN as null."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else (None if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, np.integer):
        return int(value)
    return value


def _cell(summary: list[dict], method: str, bits: str, contrast: str) -> dict | None:
    return next((e for e in summary if e["method"] == method and e["scenario"] == bits and e["contrast"] == contrast), None)


def has_tumour_scores(summary: list[dict]) -> bool:
    """Whether any summary line carries the tumour / rest-of-brain scores (some subject had a tumour mask)."""
    return any("n_tumour" in entry for entry in summary)


def _table(result: EvaluationResult, summary: list[dict], metrics: tuple[tuple[str, int], ...],
           count: str = "n") -> list[str]:
    methods = result.methods
    header = " / ".join(HEADERS[m.replace("legacy_", "")] for m, _ in metrics)
    lines = [
        "| Scenario | Missing | " + " | ".join(f"{m.replace('|', '/')}: {header}" for m in methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    cells = [(i["scenario"], i["scenario_label"], c) for i in result.scenarios for c in i["missing"]]
    for bits, label, contrast in cells + [(OVERALL, "**Overall**", "all")]:
        texts = []
        for method in methods:
            entry = _cell(summary, method, bits, contrast)
            if entry is None or f"{metrics[0][0]}_mean" not in entry:
                texts.append("–")
            else:
                texts.append(" / ".join(_mean_std(entry, m, d) for m, d in metrics) + f" ({entry[count]})")
        scenario = label if bits == OVERALL else f"{label} (`{bits}`)"
        lines.append(f"| {scenario} | {contrast} | " + " | ".join(texts) + " |")
    return lines


def _markdown(result: EvaluationResult, summary: list[dict], comparisons: list[dict], title: str, figures: dict[str, Path]) -> str:
    subjects = sorted({r["subject"] for r in result.rows})
    lines = [f"# {title}", "", f"{len(subjects)} test subject(s); methods: {', '.join(result.methods)}.", "", UNITS_NOTE, ""]
    lines += _table(result, summary, (("psnr", 2), ("ssim", 3), ("mae", 4)))
    if has_tumour_scores(summary):
        lines += ["", "## Tumour and the rest of the brain", "", REGION_NOTE, ""]
        lines += _table(result, summary, tuple((m, 2 if m.endswith("psnr") else 3) for m in REGION_METRICS), "n_tumour")
    lines += ["", "## Legacy MM-GAN metric", "", LEGACY_NOTE, ""]
    lines += _table(result, summary, (("legacy_psnr", 2), ("legacy_ssim", 3)))
    lines += ["", "## Paired tests (PSNR, Wilcoxon signed-rank)", ""]
    if comparisons:
        lines += ["| Scenario | Missing | A | B | median A − B (dB) | p | n |", "|---|---|---|---|---|---|---|"]
        for c in comparisons:
            lines.append(f"| {c['scenario_label']} | {c['contrast']} | {c['method_a']} | {c['method_b']} | "
                         f"{c['median_difference']:.2f} | {c['p_value']:.3g} | {c['n']} |")
    else:
        lines.append("Not run: fewer than five subjects with finite scores, or a single method.")
    lines += ["", "## Figures", ""] + [f"![{key}]({path.name})" for key, path in figures.items()]
    return "\n".join(lines) + "\n"


def _save(figure, path: Path) -> Path:
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return path


def _bars_figure(result: EvaluationResult, summary: list[dict], title: str):
    from matplotlib.figure import Figure

    cells = [(i["scenario"], i["scenario_label"], c, len(i["missing"])) for i in result.scenarios for c in i["missing"]]
    cells.append((OVERALL, "Overall", "all", 1))
    labels = [label if n_missing == 1 else f"{label}\n({contrast})" for _, label, contrast, n_missing in cells]
    methods = result.methods
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(cells))
    figure = Figure(figsize=(max(6.0, 1.1 * len(cells) + 2), 7.5), layout="constrained")
    axes = figure.subplots(2, 1, sharex=True)
    for ax, metric, ylabel in zip(axes, ("psnr", "ssim"), ("PSNR (dB, brain mask)", "SSIM (brain mask)")):
        for k, method in enumerate(methods):
            entries = [_cell(summary, method, bits, contrast) for bits, _, contrast, _ in cells]
            means = np.array([e[f"{metric}_mean"] if e else np.nan for e in entries], float)
            stds = np.array([e[f"{metric}_std"] if e else np.nan for e in entries], float)
            means[~np.isfinite(means)] = np.nan  # a perfect (infinite-PSNR) cell cannot be drawn as a bar
            ax.bar(x + (k - (len(methods) - 1) / 2) * width, means, width, yerr=np.nan_to_num(stds), capsize=3, label=method)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.axvline(len(cells) - 1.5, color="grey", lw=0.8, ls="--")
    axes[1].set_ylim(0, 1)
    axes[1].set_xticks(x, labels, fontsize=8)
    axes[1].set_xlabel("scenario: given → missing (synthesized contrast)")
    axes[0].legend(title="method", fontsize=8)
    n = sorted({e["n"] for e in summary if e["scenario"] != OVERALL})
    figure.suptitle(f"{title}\nmean ± std over subjects (n = {', '.join(map(str, n))})")
    return figure


def _examples_figure(result: EvaluationResult, bits: str, title: str):
    """Rows: missing contrast × subject. Columns: given | truth | synthesis per method | |error| per method.

    Axes are placed by hand (inches) rather than by a layout engine: a grid of images needs none,
    and constrained layout would dominate the time a report takes.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    gray = colormaps["gray"]
    magma = colormaps["magma"].with_extremes(bad="black")  # outside the brain: not scored, drawn black
    examples = [e for e in result.examples if e.scenario == bits]
    # Only the methods that synthesized something here (an imputer that does not serve this scenario has no column).
    methods = [m for m in result.methods if any(m in e.synthesis for e in examples)]
    n_given = max(len(e.given) for e in examples)
    n_cols, n_rows = n_given + 1 + 2 * len(methods), len(examples)
    ny, nx = examples[0].truth.shape
    cell_w = 1.8
    cell_h = cell_w * min(max(ny / nx, 0.5), 2.0)
    left, right, top, bottom, gap_x, gap_y = 0.8, 1.3, 0.75, 0.15, 0.08, 0.3
    width = left + n_cols * cell_w + (n_cols - 1) * gap_x + right
    height = top + n_rows * cell_h + (n_rows - 1) * gap_y + bottom
    figure = Figure(figsize=(width, height))
    errors = [np.abs(e.synthesis[m] - e.truth)[e.mask] for e in examples for m in methods if m in e.synthesis and e.mask.any()]
    vmax = max(float(np.percentile(np.concatenate(errors), 99)), 1e-3) if errors else 1.0
    error_image = None
    for row, example in enumerate(examples):
        panels = [(f"given {name}", image, gray) for name, image in example.given.items()]
        panels += [(None, None, None)] * (n_given - len(example.given))
        panels.append((f"truth {example.contrast}", example.truth, gray))
        panels += [(f"{m} (synthesis)", example.synthesis.get(m), gray) for m in methods]
        for m in methods:
            error = None if m not in example.synthesis else np.where(example.mask, np.abs(example.synthesis[m] - example.truth), np.nan)
            panels.append((f"|error| {m}", error, magma))
        y0 = height - top - row * (cell_h + gap_y) - cell_h
        for col, (name, image, cmap) in enumerate(panels):
            if image is None:
                continue
            x0 = left + col * (cell_w + gap_x)
            ax = figure.add_axes((x0 / width, y0 / height, cell_w / width, cell_h / height))
            ax.set_xticks([])
            ax.set_yticks([])
            # Row 0 at the top: anterior up, patient's right on the left for LPS arrays with identity direction.
            shown = ax.imshow(image, cmap=cmap, vmin=0.0, vmax=vmax if cmap is magma else 1.0,
                              interpolation="nearest", aspect="auto")
            if cmap is magma:
                error_image = shown
            ax.set_title("\n".join(textwrap.wrap(name, 26)), fontsize=8)  # long method names on two lines
            if col == 0:
                ax.set_ylabel(f"{example.subject}\nmissing {example.contrast}\nz = {example.slice_index}", fontsize=8)
    if error_image is not None:
        x0 = left + n_cols * cell_w + (n_cols - 1) * gap_x + 0.15
        bar_axes = figure.add_axes((x0 / width, bottom / height, 0.15 / width, (height - top - bottom) / height))
        bar = figure.colorbar(error_image, cax=bar_axes)
        bar.ax.set_title("|error|", fontsize=9)
    figure.suptitle(f"{title}: {examples[0].scenario_label} (scenario {bits}), axial slice\n"
                    "gray 0–1 and |synthesis − truth| in units of each true volume's 99.5th percentile in the brain; "
                    "outside the brain is not scored (black in error maps)",
                    fontsize=10, y=1 - 0.08 / height, va="top")
    return figure


def write_report(result: EvaluationResult, out: Path, title: str) -> dict[str, Path]:
    """Write results.json (rows, summary, paired tests), results.csv (rows), results.md (tables),
    results_bars.png and one examples_<scenario>.png per scenario with example slices. Where some
    subject has a tumour mask, rows, summary and CSV carry the tumour / rest-of-brain scores too
    (harness.REGION_METRICS) and results.md a table of them.

    Returns {"json", "csv", "markdown", "bars", "examples_<bits>"...} -> path. Every file is written
    atomically, so a failed report never leaves a half-written file.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    comparisons = result.comparisons("psnr")
    paths: dict[str, Path] = {}
    figures: dict[str, Path] = {}
    if result.rows:
        figures["bars"] = _save(_bars_figure(result, summary, title), out / "results_bars.png")
    for info in result.scenarios:
        if any(e.scenario == info["scenario"] for e in result.examples):
            path = out / f"examples_{info['scenario']}.png"
            figures[f"examples_{info['scenario']}"] = _save(_examples_figure(result, info["scenario"], title), path)
    document = {"title": title, "methods": result.methods, "scenarios": result.scenarios,
                "summary": summary, "comparisons": comparisons, "rows": result.rows}
    paths["json"] = write_text(out / "results.json", json.dumps(_json_safe(document), indent=1, ensure_ascii=False) + "\n")
    buffer = io.StringIO()
    fields = ROW_FIELDS + (REGION_METRICS if any(m in r for r in result.rows for m in REGION_METRICS) else ())
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.rows)
    paths["csv"] = write_text(out / "results.csv", buffer.getvalue())
    paths["markdown"] = write_text(out / "results.md", _markdown(result, summary, comparisons, title, figures))
    return {**paths, **figures}
