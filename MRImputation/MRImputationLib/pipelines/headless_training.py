"""Headless training: train → evaluate on the run's test subjects → export a bundle (→ install it).

What `MRImputationTraining/train.py` runs (under Slicer or a plain Python), and what the training
panel runs in its child process (`python -m MRImputationLib.pipelines.headless_training`), so both are one
path. The options are `mrimpute train`'s (`cli.add_train_arguments`, defined once) plus four for
the steps after training. Exit codes and progress events are the command line's (`cli.run`):
0 done, 1 failed, 2 bad input, 130 cancelled; with `--progress json` (the default when stdout is not
a terminal, e.g. a log collector) one JSON event per line on stdout.

    python MRImputationTraining/train.py -- DATA --out RUN --config tiny --epochs 1
    Slicer --no-main-window --python-script MRImputationTraining/train.py -- DATA --out RUN --install

The run folder then holds, besides what `mrimpute train` writes, `evaluation/` (results.md/.csv/.json
and plots on the test subjects) and `bundle/` (what MR Imputation loads).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from ..cli import add_train_arguments, cmd_train, run
from ..core.errors import InputError
from ..core.progress import Progress

PROG = "train.py"
# Imported by the steps here; a missing one is a bad installation, said before minutes of work.
NEEDED_MODULES = (("torch", "the PyTorch extension (Slicer) or `pip install torch`"),
                  ("safetensors", "`pip install safetensors`"),
                  ("skimage", "`pip install scikit-image`"))


def build_parser() -> argparse.ArgumentParser:
    """`mrimpute train`'s parser (the same definition) plus the steps after training.

    >>> args = build_parser().parse_args(["data", "--out", "run", "--config", "tiny", "--install"])
    >>> args.config, args.install, args.no_evaluate
    ('tiny', '', False)
    """
    parser = argparse.ArgumentParser(
        prog=PROG, description="MM-GAN training, then evaluation on the run's test subjects and a model bundle.",
        epilog="Inside Slicer: Slicer --no-main-window --python-script train.py -- DATA --out RUN [options]")
    add_train_arguments(parser)
    after = parser.add_argument_group("after training")
    after.add_argument("--no-evaluate", action="store_true",
                       help="skip the evaluation on the run's test subjects (RUN/evaluation)")
    after.add_argument("--no-export", action="store_true", help="skip writing the model bundle")
    after.add_argument("--bundle", type=Path,
                       help="where the bundle is written (default RUN/bundle; a path ending in .zip writes a zip)")
    after.add_argument("--install", nargs="?", const="", metavar="MODELS_FOLDER",
                       help="also install the bundle where MR Imputation lists its models (default: Slicer's "
                            "MRImputation/models cache folder inside Slicer, else $MRIMPUTATION_MODELS or the "
                            "user cache folder)")
    return parser


def split_script_arguments(argv: Sequence[str]) -> list[str]:
    """The script's own arguments: Slicer may pass the `--` that separates them from its own.

    >>> split_script_arguments(["--", "data", "--out", "run"])
    ['data', '--out', 'run']
    >>> split_script_arguments(["data", "--out", "run"])
    ['data', '--out', 'run']
    """
    argv = list(argv)
    return argv[1:] if argv[:1] == ["--"] else argv


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)  # Slicer's redirected streams may not have it
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False


def check_dependencies() -> None:
    """InputError naming what to install when a package the training imports is missing."""
    from importlib.util import find_spec

    absent = [(m, how) for m, how in NEEDED_MODULES if find_spec(m) is None]
    if absent:
        raise InputError("missing Python package(s): " + "; ".join(f"{m} (install with {how})" for m, how in absent)
                         + ". Inside Slicer, open MR Imputation once: it installs them after asking.")


def check_data(data: Path, out: Path, resume: bool) -> None:
    """Fast checks before torch is imported: the data folder (and the run folder with --resume)."""
    from ..data.discovery import discover_subjects

    if not data.is_dir():
        raise InputError(f"{data}: the data folder does not exist. Give a folder of subjects (raw, one folder or "
                         "file set per subject) or a folder written by `mrimpute preprocess`.")
    if not (data / "manifest.json").exists():
        discover_subjects(data)  # InputError naming the folder when it holds no subject image
    if resume and not (out / "config.json").exists():
        raise InputError(f"{out}: no training run to resume (config.json missing); start it without --resume.")


def models_folder(requested: str | None) -> Path:
    """Where `--install` puts the bundle: the given folder, else the folder MR Imputation lists."""
    from ..models.store import default_models_folder

    if requested:
        return Path(requested)
    slicer = sys.modules.get("slicer")  # set only when running inside Slicer
    app = getattr(slicer, "app", None)
    return default_models_folder(app.cachePath if app is not None else None)


def bundle_name(run: Path) -> str:
    """'<network>-<contrasts>-<run folder>': one installed model per run, never replacing another run's."""
    model = json.loads((run / "model.json").read_text(encoding="utf-8"))
    contrasts = json.loads((run / "contrasts.json").read_text(encoding="utf-8"))
    return f"{model['name']}-{'-'.join(contrasts['names'])}-{run.resolve().name}"


def _evaluation_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_training(args: argparse.Namespace, progress: Progress) -> dict:
    """Train (or resume), then evaluate, export and install as asked; returns what the done event reports."""
    from .evaluate import evaluate_model
    from .export import export_run

    data, out = Path(args.data), Path(args.out)
    check_data(data, out, args.resume)
    check_dependencies()
    steps = ["train"] + ([] if args.no_evaluate else ["evaluate"]) + ([] if args.no_export else ["export"])
    if args.install is not None and args.no_export:
        raise InputError("--install needs the bundle that --no-export skips; leave one of them out.")
    progress.log(f"step 1/{len(steps)}: training into {out}")
    summary = cmd_train(args, progress)
    info: dict = {"run": str(out), "training": summary}
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, only the first process evaluates and exports
        return info
    if not summary.get("finished"):
        progress.log("training stopped before its last epoch: continue with --resume; nothing is evaluated or exported")
        return info
    preprocessed = Path(summary.get("preprocessed") or data)
    if "evaluate" in steps:
        progress.log(f"step {steps.index('evaluate') + 1}/{len(steps)}: evaluating on the run's test subjects")
        report = evaluate_model(out, preprocessed, out / "evaluation", split_file=out / "split.json",
                                device=_evaluation_device(args.device), progress=progress)
        info["evaluation"] = {"out": report["out"], "subjects": report["subjects"], "summary": report["summary"]}
    elif (out / "evaluation").exists():
        set_aside_outdated_evaluation(out, progress)
    if "export" in steps:
        progress.log(f"step {steps.index('export') + 1}/{len(steps)}: exporting the model bundle")
        progress.update("export", 0.0, "writing the bundle")
        bundle = export_run(out, args.bundle or out / "bundle", name=bundle_name(out))
        progress.update("export", 1.0, str(bundle))
        progress.log(f"bundle written to {bundle}")
        info["bundle"] = str(bundle)
        if args.install is not None:
            info["installed"] = install_bundle(bundle, models_folder(args.install), progress)
    return info


def set_aside_outdated_evaluation(run: Path, progress: Progress) -> None:
    """Rename RUN/evaluation when it predates the weights, so the bundle never reports an older model's metrics."""
    results = run / "evaluation" / "results.json"
    best, last = run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt"
    weights = best if best.exists() else last
    if results.exists() and weights.exists() and results.stat().st_mtime >= weights.stat().st_mtime:
        return
    target = run / "evaluation-outdated"
    if target.exists():
        import shutil

        shutil.rmtree(target)
    (run / "evaluation").rename(target)
    progress.log(f"{run / 'evaluation'} was made with earlier weights: moved to {target}, so the bundle carries no "
                 "test metrics; run again without --no-evaluate to measure them")


def install_bundle(bundle: Path, folder: Path, progress: Progress) -> dict:
    """Install (or replace: a resumed run re-exports under the same name) the bundle into `folder`."""
    from ..models.store import ModelStore

    card = ModelStore(folder).import_bundle(bundle, replace=True)
    progress.log(f"installed {card.name} {card.version} in {card.path}: MR Imputation lists it now")
    return {"id": card.id, "name": card.name, "version": card.version, "path": str(card.path)}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse (dropping a leading `--`), then run with the command line's progress and exit codes."""
    args = build_parser().parse_args(split_script_arguments(sys.argv[1:] if argv is None else argv))
    if args.progress is None:
        args.progress = "bar" if _is_terminal(sys.stderr) and _is_terminal(sys.stdout) else "json"
    return run(run_training, args)


if __name__ == "__main__":
    raise SystemExit(main())
