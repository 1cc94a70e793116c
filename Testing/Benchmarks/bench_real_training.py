"""Bounded-time training on the three shared real cases: train on two, test on the third, rotate.

For each fold, `tiny`, `tiny` with the linear path (the generator starts from the linear
baseline and learns a residual), `tiny` with the linear path and the learned voxel path (a small
per-voxel MLP beside the U-Net) and a reduced MM-GAN (`mmgan-reduced`: the faithful design,
narrower and shallower, at 128 px) are trained for a fixed number of epochs on CPU (an epoch is every
non-empty slice of the two training cases once, in batches of 8; the table reports the steps this
came to), then scored with the project metric (EVALUATION.md) on the held-out case beside the
voxel-wise linear baseline fitted on the same two training cases (fitted and scored once per
fold). Three cases are far too few for a useful model: this shows the harness working on real
scans and where each method stands, not a clinical result.

    python Testing/Benchmarks/bench_real_training.py [--data ../shared/data/real] [--epochs 3] [--folds CASE,...] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "MRImputation"))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "real"

MODELS = {
    "tiny": {"model": "tiny", "model_overrides": {"image_size": 128}, "batch_size": 8, "lr": 1e-3,
             "curriculum": "none", "crop": "brain", "skip_empty": True},
    "mmgan-reduced": {"model": "mmgan-reduced", "batch_size": 8, "lr": 2e-4, "curriculum": "mmgan",
                      "crop": "brain", "skip_empty": True},
}
MODELS["tiny+linear-path"] = {**MODELS["tiny"], "model_overrides": {"image_size": 128, "generator": {"linear_path": True}}}
MODELS["tiny+linear+voxel-path"] = {
    **MODELS["tiny"], "model_overrides": {"image_size": 128, "generator": {"linear_path": True, "voxel_path_width": 32}}}


def main() -> None:
    from MRImputationLib.data.discovery import discover_subjects
    from MRImputationLib.pipelines.evaluate import evaluate_model
    from MRImputationLib.preprocessing.folder import preprocess_folder
    from MRImputationLib.preprocessing.subject import PreprocessConfig
    from MRImputationLib.core.progress import Progress
    from MRImputationLib.data.splits import Split
    from MRImputationLib.training.config import TrainConfig
    from MRImputationLib.pipelines.train import train_run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mrimpute-bench-real"))
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per model and fold")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--folds", help="comma-separated held-out cases (default: every case in turn)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    progress = Progress("none")
    subjects = [s.subject for s in discover_subjects(args.data)]
    folds = args.folds.split(",") if args.folds else subjects
    unknown = sorted(set(folds) - set(subjects))
    if unknown:
        parser.error(f"--folds {', '.join(unknown)}: not in {args.data}; the cases are {', '.join(subjects)}")
    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models {', '.join(unknown)}: not known; choose from {', '.join(MODELS)}")
    preprocessed = args.work / "preprocessed"
    # Always redone (35 s here): a folder left by an older version of the code would silently score
    # other intensities (N4 changed once, and moved TCGA-DU-7294's linear baseline by 0.65 dB).
    if preprocessed.exists():
        shutil.rmtree(preprocessed)
    # The cases are co-registered already: N4 + mask only.
    preprocess_folder(args.data, preprocessed, PreprocessConfig(register=False, qc=False), jobs=1, progress=progress)
    rows = []
    for test in folds:
        train = [s for s in subjects if s != test]
        split_file = args.work / f"split-{test}.json"
        Split(train=train, val=[], test=[test], seed=0).save(split_file)
        for index, name in enumerate(models):
            run = args.work / f"run-{name}-{test}"
            if run.exists():  # `train` refuses to continue a finished run without --resume
                shutil.rmtree(run)
            settings = {**MODELS[name], "epochs": args.epochs}
            start = time.monotonic()
            train_run(preprocessed, run, TrainConfig.from_dict(settings), split_file=split_file, progress=progress)
            seconds = time.monotonic() - start
            steps = json.loads((run / "summary.json").read_text())["global_step"]
            evaluate_model(run, preprocessed, args.work / f"eval-{name}-{test}", split_file=split_file,
                           baseline=index == 0, progress=progress)
            summary = json.loads((args.work / f"eval-{name}-{test}" / "results.json").read_text())["summary"]
            for row in summary:
                if row["scenario"] == "overall":
                    model_row = row["method"] != "linear"
                    rows.append({"test": test, "method": name if model_row else "linear", "psnr": row["psnr_mean"],
                                 "ssim": row["ssim_mean"], "mae": row["mae_mean"],
                                 "steps": steps if model_row else None, "train_s": round(seconds) if model_row else None})
            print(json.dumps(rows[-2:]), flush=True)
    lines = ["| test case | method | overall PSNR (dB) | SSIM | MAE | steps | training (s) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['test']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['mae']:.4f} | "
                     f"{r['steps'] if r['steps'] is not None else '-'} | {r['train_s'] if r['train_s'] is not None else '-'} |")
    methods = sorted({r["method"] for r in rows})
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        lines.append(f"| **mean of folds** | {m} | {sum(r['psnr'] for r in mine) / len(mine):.2f} | "
                     f"{sum(r['ssim'] for r in mine) / len(mine):.4f} | {sum(r['mae'] for r in mine) / len(mine):.4f} | | |")
    table = (f"Overall = mean over the 14 scenarios of (T1, T1c, T2, FLAIR); {args.epochs} training epochs "
             "(batches of 8) per model and fold on CPU.\n\n" + "\n".join(lines))
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + f"\n\nReproduce: `python Testing/Benchmarks/bench_real_training.py --epochs {args.epochs}`\n")


if __name__ == "__main__":
    main()
