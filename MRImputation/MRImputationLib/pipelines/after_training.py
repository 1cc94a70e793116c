"""What `mrimpute train` does once the last epoch is done, when asked: evaluate, export, install.

`mrimpute train DATA --out RUN --evaluate --export --install` trains (pipelines/train.py), then
evaluates the model on the run's test subjects (RUN/evaluation: results.md/.csv/.json and plots),
exports a model bundle (RUN/bundle, or --bundle) named after the run, and installs it where MR
Imputation lists its models. The headless script MRImputationTraining/train.py and the training
panel's child process run exactly this command. Exporting without evaluating sets an evaluation of
older weights aside, so a bundle never carries another model's test metrics. Under torchrun only the
first process does these steps; a run stopped before its last epoch does none of them.

>>> AfterTraining(evaluate=True, export=True).steps
['train', 'evaluate', 'export']
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError
from ..core.progress import Progress
from ..training.run_folder import RunFolder

# Imported by each step; a missing one is a bad installation, said before minutes of work.
NEEDED_MODULES = {
    "train": (("torch", "the PyTorch extension (Slicer) or `pip install torch`"),
              ("skimage", "`pip install scikit-image`")),
    "evaluate": (),
    "export": (("safetensors", "`pip install safetensors`"),),
    "install": (),
}


@dataclass(frozen=True)
class AfterTraining:
    """The steps after training that `mrimpute train` was asked for (`--evaluate`, `--export`, `--install`)."""

    evaluate: bool = False
    export: bool = False
    bundle: Path | None = None  # where the bundle goes (default RUN/bundle; a path ending in .zip writes a zip)
    install: bool = False
    models_folder: Path | None = None  # where --install puts it (default: models.store.default_models_folder())

    @property
    def steps(self) -> list[str]:
        """The command's steps in order, training first (for "step 2/3" lines)."""
        return ["train"] + [step for step, asked in (("evaluate", self.evaluate), ("export", self.export),
                                                     ("install", self.install)) if asked]

    def check(self, run: Path | None = None) -> None:
        """InputError before anything runs: --install without the bundle, a package a step imports is missing, or
        a bundle path export would refuse after training (not a bundle, or the run itself)."""
        from .export import check_bundle_destination

        if self.install and not self.export:
            raise InputError("--install needs the bundle that --no-export skips; leave one of them out.")
        if self.bundle is not None and not self.export:
            raise InputError(f"--bundle {self.bundle}: nothing is exported (--no-export); leave one of them out.")
        check_dependencies(self.steps)
        bundle = Path(self.bundle) if self.bundle is not None else (Path(run) / "bundle" if run else None)
        if self.export and bundle is not None:
            check_bundle_destination(bundle, Path(run) if run else None, bundle.suffix == ".zip")

    def run(self, run: Path, data: Path, summary: dict, device: str, progress: Progress) -> dict:
        """The asked steps on a finished run; returns what the done event reports (run, training, and each step's)."""
        from .evaluate import evaluate_model
        from .export import export_run

        info: dict = {"run": str(run), "training": summary}
        if len(self.steps) == 1 or int(os.environ.get("RANK", "0")) != 0:  # under torchrun: the first process only
            return info
        if not summary.get("finished"):
            progress.log("training stopped before its last epoch: continue with --resume; nothing is evaluated or "
                         "exported")
            return info
        folder = RunFolder(run)
        if self.evaluate:
            self._step("evaluate", "evaluating on the run's test subjects", progress)
            report = evaluate_model(run, Path(summary.get("preprocessed") or data), folder.evaluation,
                                    split_file=folder.split, device=evaluation_device(device), progress=progress)
            info["evaluation"] = {"out": report["out"], "subjects": report["subjects"], "summary": report["summary"]}
        elif self.export and folder.evaluation.exists():
            set_aside_outdated_evaluation(run, progress)
        if self.export:
            self._step("export", "exporting the model bundle", progress)
            progress.update("export", 0.0, "writing the bundle")
            bundle = export_run(run, self.bundle or run / "bundle", name=bundle_name(run))
            progress.update("export", 1.0, str(bundle))
            progress.log(f"bundle written to {bundle}")
            info["bundle"] = str(bundle)
        if self.install:
            from ..models.store import default_models_folder

            self._step("install", "installing the bundle for MR Imputation", progress)
            info["installed"] = install_bundle(Path(info["bundle"]), self.models_folder or default_models_folder(),
                                               progress)
        return info

    def _step(self, step: str, what: str, progress: Progress) -> None:
        progress.log(f"step {self.steps.index(step) + 1}/{len(self.steps)}: {what}")


def check_dependencies(steps: list[str]) -> None:
    """InputError naming what to install when a package the steps import is missing."""
    from importlib.util import find_spec

    needed = dict(pair for step in steps for pair in NEEDED_MODULES[step])
    absent = [(module, how) for module, how in needed.items() if find_spec(module) is None]
    if absent:
        raise InputError("missing Python package(s): " + "; ".join(f"{m} (install with {how})" for m, how in absent)
                         + ". Inside Slicer, open MR Imputation once: it installs them after asking.")


def evaluation_device(device: str) -> str:
    """The training's --device for the evaluation; auto: the GPU when PyTorch sees one."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def bundle_name(run: Path) -> str:
    """'<network>-<contrasts>-<run folder>': one installed model per run, never replacing another run's."""
    folder = RunFolder(run)
    return f"{folder.read_json(folder.model)['name']}-{'-'.join(folder.read_contrasts().names)}-{run.resolve().name}"


def set_aside_outdated_evaluation(run: Path, progress: Progress) -> None:
    """Rename RUN/evaluation when it predates the weights, so the bundle never reports an older model's metrics."""
    folder = RunFolder(run)
    results = folder.evaluation / "results.json"
    weights = folder.best_checkpoint if folder.best_checkpoint.exists() else folder.last_checkpoint
    if results.exists() and weights.exists() and results.stat().st_mtime >= weights.stat().st_mtime:
        return
    if folder.outdated_evaluation.exists():
        shutil.rmtree(folder.outdated_evaluation)
    folder.evaluation.rename(folder.outdated_evaluation)
    progress.log(f"{folder.evaluation} was made with earlier weights: moved to {folder.outdated_evaluation}, so the "
                 "bundle carries no test metrics; run again with --evaluate to measure them")


def install_bundle(bundle: Path, models_folder: Path, progress: Progress) -> dict:
    """Install (or replace: a resumed run re-exports under the same name) the bundle into `models_folder`."""
    from ..models.store import ModelStore

    card = ModelStore(models_folder).import_bundle(bundle, replace=True)
    progress.log(f"installed {card.name} {card.version} in {card.path}: MR Imputation lists it now")
    return {"id": card.id, "name": card.name, "version": card.version, "path": str(card.path)}
