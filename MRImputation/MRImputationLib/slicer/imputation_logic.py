"""The module's logic, usable without the widget: nodes in, child process, new nodes out.

`ImputationLogic().impute(inputs={"T1": node, ...}, model=..., options=...)` writes the input
nodes to a temporary folder, runs `mrimpute impute` in a child process (PythonSlicer inside
Slicer, this Python elsewhere), and loads the results as new nodes "<C> (synthetic)" and
"<C> uncertainty" next to the inputs. `start_impute` is the same without blocking: the caller polls
the returned job (the widget with a QTimer). `compare` makes the error map and metrics table.
Runs inside Slicer and on the `slicer-core` package; `slicer` is imported inside the functions.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from ..core.errors import InputError
from .imputation_decisions import (ImputationOptions, child_environment, compare_command, impute_command, lib_folder,
                           output_node_name, provenance, read_report, selection_state)
from ..models.store import ModelCard, ModelStore
from ..core.contrasts import ContrastSet, canonical_contrast
from .process import ChildProcess, ProgressEvent, RunResult


def in_slicer_app() -> bool:
    """True inside the Slicer application (not on slicer-core or plain Python)."""
    import slicer

    return getattr(slicer, "app", None) is not None


def python_executable() -> str:
    """PythonSlicer inside Slicer (the child must get Slicer's Python and packages), else this Python."""
    if not in_slicer_app():
        return sys.executable
    found = shutil.which("PythonSlicer")
    if not found:
        raise InputError("PythonSlicer was not found next to Slicer, so the imputation cannot start; reinstall Slicer.")
    return found


def start_device_probe(on_found: Callable[[dict], None]) -> ChildProcess:
    """Ask a child Python which devices torch sees (torch is never imported in Slicer's own process)."""
    from .imputation_decisions import device_probe_command

    return ChildProcess(device_probe_command(python_executable()), env=base_environment(),
                        on_done=lambda event: on_found(event.info)).start()


def base_environment() -> dict:
    """The environment Slicer was started with (PythonSlicer, a launcher, sets up its own paths)."""
    import slicer

    return dict(slicer.util.startupEnvironment()) if in_slicer_app() else dict(os.environ)


def temporary_root() -> Path:
    import slicer

    return Path(slicer.app.temporaryPath) if in_slicer_app() else Path(tempfile.gettempdir())


def idle_events() -> Callable[[], None] | None:
    """What a blocking wait runs between polls: Qt event processing inside Slicer, nothing elsewhere."""
    import slicer

    return slicer.app.processEvents if in_slicer_app() else None


def node_contrast(node) -> str | None:
    """The contrast an output node records (MRImputation.contrast), if any."""
    from .bridge import get_attributes

    return get_attributes(node).get("contrast") if node is not None else None


@dataclass
class _Job:
    """A child process with its temporary folder; `poll()` until `finished`, then read `nodes`/`error`."""

    child: ChildProcess
    work: Path
    on_finished: Callable | None = None
    result: RunResult | None = None
    error: str = ""
    nodes: list = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def ok(self) -> bool:
        return self.finished and not self.error

    def poll(self) -> bool:
        if self.result is not None:
            return True
        result = self.child.poll()
        if result is None:
            return False
        try:
            if result.ok:
                self._load()
            else:
                self.error = result.message()
        except Exception as error:  # noqa: BLE001 - reported to the user through the job, never lost
            self.error = f"the results could not be loaded: {error}"
        finally:
            self.result = result
            shutil.rmtree(self.work, ignore_errors=True)
        if self.on_finished is not None:
            self.on_finished(self)
        return True

    def _load(self) -> None:
        raise NotImplementedError

    def cancel(self) -> None:
        """End the child's whole process tree; `poll()` then reports the job as cancelled."""
        self.child.cancel()

    @property
    def cancelled(self) -> bool:
        return bool(self.result and self.result.cancelled)

    def wait(self, idle: Callable[[], None] | None = None, timeout: float | None = None) -> list:
        """Block until the job ends; returns the new nodes or raises InputError with the reason."""
        self.child.wait(timeout=timeout, idle=idle)
        self.poll()
        if self.error:
            raise InputError(self.error)
        return self.nodes


@dataclass
class ImputationJob(_Job):
    """One running imputation. `nodes`: the synthetic (then uncertainty) volume nodes once done."""

    inputs: dict = field(default_factory=dict)
    statement: str = ""
    out: Path | None = None
    report: dict = field(default_factory=dict)
    self_check_table: object = None

    def _load(self) -> None:
        from ..core.io import read_volume
        from .bridge import add_output_node, set_attributes, table_node

        self.report = read_report(self.out)
        inputs = list(self.inputs.values())
        for kind in ("synthetic", "uncertainty"):
            for contrast, name in (self.report.get("files", {}).get(kind) or {}).items():
                volume = read_volume(self.out / name, contrast=contrast)
                attributes = {**provenance(self.report, self.statement, kind), "contrast": contrast}
                self.nodes.append(add_output_node(volume, output_node_name(contrast, kind), attributes, inputs))
        rows = self.report.get("self_check") or []
        if rows:
            model = (self.report.get("model") or {}).get("name", "")
            self.self_check_table = table_node(
                [{"hidden": r["hidden"], "from": r["from"], "psnr": r["psnr"], "ssim": r["ssim"], "mae": r["mae"]}
                 for r in rows], f"Self-check {model}".strip(), ["hidden", "from", "psnr", "ssim", "mae"])
            for node in self.nodes:
                set_attributes(node, {"selfCheckTable": self.self_check_table.GetID()})

    @property
    def synthetic_nodes(self) -> list:
        return [n for n in self.nodes if n.GetAttribute("MRImputation.kind") == "synthetic"]


@dataclass
class ComparisonJob(_Job):
    """Error map and metrics of a synthetic volume against a real one; `error_node`, `table`, `metrics`."""

    contrast: str = ""
    real: object = None
    synthetic: object = None
    out: Path | None = None
    metrics: dict = field(default_factory=dict)
    error_node: object = None
    table: object = None

    def _load(self) -> None:
        from ..core.io import read_volume
        from .bridge import add_output_node, error_color_node, metrics_table_node, window_level

        self.metrics = json.loads((self.out / "metrics.json").read_text(encoding="utf-8"))
        error = read_volume(self.out / "error.nii.gz", contrast=self.contrast)
        attributes = {"kind": "error", "contrast": self.contrast, "synthetic": self.synthetic.GetName(),
                      "real": self.real.GetName(), **{f"metric.{k}": v for k, v in self.metrics.items()}}
        _, high = window_level(error.array, 0.0, 99.0)
        # Zero error (outside the brain mask) is made transparent, so the map overlays the reference.
        self.error_node = add_output_node(error, output_node_name(self.contrast, "error"), attributes, [self.real],
                                          window=(0.0, high), color_node_id=error_color_node().GetID(),
                                          hide_below=high * 1e-6)
        self.table = metrics_table_node(self.metrics, f"{output_node_name(self.contrast, 'error')} metrics")
        self.nodes = [self.error_node, self.table]


class ImputationLogic:
    """Imputation and inspection without the widget. Can be used without GUI widget.

    `store` holds the installed models (default: the user cache folder, or Slicer's cache path).
    """

    def __init__(self, store: ModelStore | None = None, python: str | None = None) -> None:
        self.store = store or ModelStore()
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

    def _child(self, command: list[str], on_progress, on_log) -> ChildProcess:
        return ChildProcess(command, env=child_environment(base_environment()), cwd=str(lib_folder()),
                            on_progress=on_progress, on_log=on_log)

    def start_impute(self, inputs: Mapping[str, object], model, options: ImputationOptions | None = None,
                     on_progress: Callable[[ProgressEvent], None] | None = None, on_log: Callable | None = None,
                     on_finished: Callable[[ImputationJob], None] | None = None) -> ImputationJob:
        """Start an imputation in a child process and return at once; poll the job (or `wait()` it)."""
        from .bridge import write_node

        card = self.model_card(model)
        contrasts = ContrastSet(tuple(card.contrasts), card.reference)
        given = {canonical_contrast(k): v for k, v in inputs.items() if v is not None}
        state = selection_state(contrasts, given, card.scenarios or None)
        if not state.valid:
            raise InputError(state.reason)
        work = Path(tempfile.mkdtemp(prefix="MRImputation-", dir=temporary_root()))
        try:
            files = {c: write_node(node, work / "inputs" / f"{c}.nii.gz", c) for c, node in given.items()}
            command = impute_command(self.python or python_executable(), card.path, files, work / "out", options)
            child = self._child(command, on_progress, on_log).start()
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return ImputationJob(child, work, on_finished, inputs=given, statement=state.statement, out=work / "out")

    def impute(self, inputs: Mapping[str, object], model, options: ImputationOptions | None = None,
               on_progress: Callable[[ProgressEvent], None] | None = None, on_log: Callable | None = None,
               timeout: float | None = None) -> list:
        """Blocking imputation for scripts: returns the new nodes (synthetic, then uncertainty)."""
        job = self.start_impute(inputs, model, options, on_progress, on_log)
        try:
            return job.wait(idle_events(), timeout)
        except TimeoutError:
            job.cancel()
            job.wait()
            raise

    def start_compare(self, synthetic, real, on_progress=None, on_log=None,
                      on_finished: Callable[[ComparisonJob], None] | None = None) -> ComparisonJob:
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
        try:
            synthetic_file = write_node(synthetic, work / "synthetic.nii.gz")
            real_file = write_node(real, work / "real.nii.gz")
            command = compare_command(self.python or python_executable(), synthetic_file, real_file, work / "out",
                                      same_units=not normalized)
            child = self._child(command, on_progress, on_log).start()
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return ComparisonJob(child, work, on_finished, contrast=contrast, real=real, synthetic=synthetic,
                             out=work / "out")

    def compare(self, synthetic, real, timeout: float | None = None) -> ComparisonJob:
        """Blocking comparison: the finished job with `error_node`, `table` and `metrics`."""
        job = self.start_compare(synthetic, real)
        job.wait(idle_events(), timeout)
        return job
