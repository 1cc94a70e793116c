"""The module's logic, usable without the widget: nodes in, child process, new nodes out.

`ImputationLogic().impute(inputs={"T1": node, ...}, model=..., options=...)` writes the input
nodes to a temporary folder, runs `mrimpute impute` in a child process (PythonSlicer inside
Slicer, this Python elsewhere), and loads the results as new nodes "<C> (synthetic)" and
"<C> uncertainty" next to the inputs. `start_impute` is the same without blocking: it returns a
job.py `Job` the caller polls (the widget with a QTimer); its `outputs` are `ImputationOutputs`.
`compare` makes the error map and metrics table (`ComparisonOutputs`). Runs inside Slicer and on
the `slicer-core` package; `slicer` is imported inside the functions.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from ..core.contrasts import ContrastSet, canonical_contrast
from ..core.errors import InputError
from ..core.events import ProgressEvent
from ..models.store import ModelCard, ModelStore, user_store
from .imputation_decisions import (
    ImputationOptions,
    compare_command,
    impute_command,
    output_node_name,
    provenance,
    read_report,
    selection_state,
)
from .job import Job, idle_events, python_executable, start_job, temporary_root


def node_contrast(node) -> str | None:
    """The contrast an output node records (MRImputation.contrast), if any."""
    from .bridge import get_attributes

    return get_attributes(node).get("contrast") if node is not None else None


@dataclass
class ImputationOutputs:
    """What a finished imputation added: `nodes` (synthetic, then uncertainty), its report, the self-check table."""

    nodes: list = field(default_factory=list)
    report: dict = field(default_factory=dict)
    self_check_table: object = None

    @property
    def synthetic_nodes(self) -> list:
        return [n for n in self.nodes if n.GetAttribute("MRImputation.kind") == "synthetic"]


@dataclass
class ComparisonOutputs:
    """What a finished comparison added: the error map node and the metrics table, for `synthetic` against `real`."""

    real: object
    synthetic: object
    metrics: dict = field(default_factory=dict)
    error_node: object = None
    table: object = None


def load_imputation(out: Path, inputs: Mapping[str, object], statement: str) -> ImputationOutputs:
    """Read what `mrimpute impute` wrote into `out` as new nodes next to the `inputs`."""
    from ..core.io import read_volume
    from .bridge import add_output_node, set_attributes, table_node

    outputs = ImputationOutputs(report=read_report(out))
    report = outputs.report
    for kind in ("synthetic", "uncertainty"):
        for contrast, name in (report.get("files", {}).get(kind) or {}).items():
            volume = read_volume(out / name, contrast=contrast)
            attributes = {**provenance(report, statement, kind), "contrast": contrast}
            outputs.nodes.append(add_output_node(volume, output_node_name(contrast, kind), attributes,
                                                 list(inputs.values())))
    rows = report.get("self_check") or []
    if rows:
        model = (report.get("model") or {}).get("name", "")
        outputs.self_check_table = table_node(
            [{"hidden": r["hidden"], "from": r["from"], "psnr": r["psnr"], "ssim": r["ssim"], "mae": r["mae"]}
             for r in rows], f"Self-check {model}".strip(), ["hidden", "from", "psnr", "ssim", "mae"])
        for node in outputs.nodes:
            set_attributes(node, {"selfCheckTable": outputs.self_check_table.GetID()})
    return outputs


def load_comparison(out: Path, contrast: str, synthetic, real) -> ComparisonOutputs:
    """Read what `mrimpute compare` wrote into `out` as an error-map node over `real` and a metrics table."""
    from ..core.io import read_volume
    from .bridge import add_output_node, error_color_node, metrics_table_node, window_level

    outputs = ComparisonOutputs(real, synthetic, json.loads((out / "metrics.json").read_text(encoding="utf-8")))
    error = read_volume(out / "error.nii.gz", contrast=contrast)
    attributes = {"kind": "error", "contrast": contrast, "synthetic": synthetic.GetName(), "real": real.GetName(),
                  **{f"metric.{k}": v for k, v in outputs.metrics.items()}}
    _, high = window_level(error.array, 0.0, 99.0)
    # Zero error (outside the brain mask) is made transparent, so the map overlays the reference.
    outputs.error_node = add_output_node(error, output_node_name(contrast, "error"), attributes, [real],
                                         window=(0.0, high), color_node_id=error_color_node().GetID(),
                                         hide_below=high * 1e-6)
    outputs.table = metrics_table_node(outputs.metrics, f"{output_node_name(contrast, 'error')} metrics")
    return outputs


class ImputationLogic:
    """Imputation and inspection without the widget. Can be used without GUI widget.

    `store` holds the built-in and installed models (default: models/store.py's `user_store()`, the
    persistent per-user models folder).
    """

    def __init__(self, store: ModelStore | None = None, python: str | None = None) -> None:
        self.store = store or user_store()
        self.python = python

    def model_card(self, model) -> ModelCard:
        """An installed model from a ModelCard, a bundle path (folder or .zip) or an installed model's id."""
        if isinstance(model, ModelCard):
            card = model
        elif isinstance(model, (str, os.PathLike)) and Path(model).exists():
            from ..models.bundle import read_bundle_info

            info, _ = read_bundle_info(model)
            card = ModelCard(info.name, info.version, list(info.contrasts), info.reference, Path(model), None, info)
        else:
            card = self.store.find(str(model))
        if not card.installed:
            raise InputError(f"{card.name} {card.version} is not installed yet: download it (after agreeing) or "
                             "import its bundle from disk first.")
        return card

    def start_impute(self, inputs: Mapping[str, object], model, options: ImputationOptions | None = None,
                     on_progress: Callable[[ProgressEvent], None] | None = None, on_log: Callable | None = None,
                     on_finished: Callable[[Job], None] | None = None) -> Job[ImputationOutputs]:
        """Start an imputation in a child process and return its job at once; poll it (or `wait()` for it)."""
        from .bridge import write_node

        card = self.model_card(model)
        contrasts = ContrastSet(tuple(card.contrasts), card.reference)
        given = {canonical_contrast(k): v for k, v in inputs.items() if v is not None}
        state = selection_state(contrasts, given, card.scenarios or None)
        if not state.valid:
            raise InputError(state.reason)
        work = Path(tempfile.mkdtemp(prefix="MRImputation-", dir=temporary_root()))
        out = work / "out"
        try:
            files = {c: write_node(node, work / "inputs" / f"{c}.nii.gz", c) for c, node in given.items()}
            command = impute_command(self.python or python_executable(), card.path, files, out, options)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return start_job(command, load=lambda info: load_imputation(out, given, state.statement), work=work,
                         on_progress=on_progress, on_log=on_log, on_finished=on_finished)

    def impute(self, inputs: Mapping[str, object], model, options: ImputationOptions | None = None,
               on_progress: Callable[[ProgressEvent], None] | None = None, on_log: Callable | None = None,
               timeout: float | None = None) -> list:
        """Blocking imputation for scripts: returns the new nodes (synthetic, then uncertainty).

        InputError with the reason if it failed; TimeoutError (the child is stopped first, nothing is
        added) if it runs longer than `timeout` seconds.
        """
        job = self.start_impute(inputs, model, options, on_progress, on_log)
        return _wait_or_stop(job, timeout, "imputation").outputs.nodes

    def start_compare(self, synthetic, real, on_progress=None, on_log=None,
                      on_finished: Callable[[Job], None] | None = None) -> Job[ComparisonOutputs]:
        """Start the error map of `synthetic` against the `real` volume of the same contrast."""
        from .bridge import get_attributes, write_node

        if synthetic is None or real is None:
            raise InputError("Pick a synthetic volume and a real volume of the same contrast to compare.")
        if synthetic is real:
            raise InputError("The synthetic and the real volume are the same node; pick the real acquisition.")
        attributes = get_attributes(synthetic)
        contrast = attributes.get("contrast") or "volume"
        normalized = str(attributes.get("units") or "").startswith("normalized")
        work = Path(tempfile.mkdtemp(prefix="MRImputation-compare-", dir=temporary_root()))
        out = work / "out"
        try:
            synthetic_file = write_node(synthetic, work / "synthetic.nii.gz")
            real_file = write_node(real, work / "real.nii.gz")
            command = compare_command(self.python or python_executable(), synthetic_file, real_file, out,
                                      same_units=not normalized)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return start_job(command, load=lambda info: load_comparison(out, contrast, synthetic, real), work=work,
                         on_progress=on_progress, on_log=on_log, on_finished=on_finished)

    def compare(self, synthetic, real, timeout: float | None = None) -> Job[ComparisonOutputs]:
        """Blocking comparison: the finished job; its `outputs` hold `error_node`, `table` and `metrics`."""
        return _wait_or_stop(self.start_compare(synthetic, real), timeout, "comparison")


def _wait_or_stop(job: Job, timeout: float | None, what: str) -> Job:
    """`job.wait(timeout)`, but a job that runs past `timeout` is stopped (quietly, its whole process tree)
    and TimeoutError raised: the caller gets the timeout, never the cancelled job's own state."""
    try:
        return job.wait(timeout, idle_events())
    except TimeoutError:
        job.cancel(wait=True, quiet=True)
        raise TimeoutError(f"the {what} did not finish within {timeout:g} s; it was stopped and nothing was "
                           "added to the scene.") from None
