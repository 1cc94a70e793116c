"""The first real model's table: every method on the LGG test patients, same split, same harness, same run.

    python Testing/Benchmarks/bench_lgg.py --data ../shared/data/lgg --work WORK [--train] \
        --out Testing/Benchmarks/results/lgg.md
    python Testing/Benchmarks/bench_lgg.py --work WORK --part val --out Testing/Benchmarks/results/lgg-val.md

With --train, each configuration of Testing/Benchmarks/configs/lgg-*.json is trained first through the
command line (`mrimpute train WORK/preprocessed --out WORK/runs/<config> --split splits/lgg.json
--threads 1`, from WORK, resumed where a run exists; a configuration's `init_from` names a run folder relative to
WORK, e.g. "runs/lgg-faithful-narrow", trained before it in name order); without it, the runs already in
WORK/runs are scored. The runs named in FLIPPED are scored a second time with test-time flips ("+ flips":
each slice's output averaged with its left-right mirror's, InferenceOptions.flip_average).
Scoring: linear regression fitted on the 48 training patients, and every run's best checkpoint
(highest validation PSNR), all on the 8 test patients of Testing/Benchmarks/splits/lgg.json (--part val:
the 4 validation patients, where the shipped configuration is chosen), in one call of the evaluation harness (EVALUATION.md: masked PSNR/SSIM/MAE per scenario x missing contrast,
tumour and rest-of-brain scores where the `_seg` masks are carried, paired Wilcoxon tests). Writes
the full report (results.md/.json/.csv, figures) to WORK/eval (WORK/eval-val) and the compact table to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "MRImputation"))

from MRImputationLib.core.contrasts import ContrastSet  # noqa: E402
from MRImputationLib.evaluation.harness import eval_subjects, evaluate  # noqa: E402
from MRImputationLib.evaluation.reports import write_report  # noqa: E402
from MRImputationLib.imputation.slice_imputer import InferenceOptions, SliceImputer  # noqa: E402
from MRImputationLib.pipelines.evaluate import fit_baseline  # noqa: E402
from MRImputationLib.preprocessing.preprocessed import load_subjects  # noqa: E402
from MRImputationLib.training.run_folder import RunFolder  # noqa: E402

SPLIT = HERE / "splits" / "lgg.json"
CONFIGS = sorted((HERE / "configs").glob("lgg-*.json"))
FLIPPED = ("lgg-faithful-narrow", "lgg-tuned-")  # runs whose names start so are scored with flips too
FLIPS = " + flips"


def train(data: Path, work: Path, configs: list[Path]) -> None:
    """Preprocess once, then train (or resume) each configuration through `mrimpute train`."""
    mrimpute = [sys.executable, "-m", "MRImputationLib"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "MRImputation")}
    pre = work / "preprocessed"
    if not (pre / "manifest.json").exists():
        subprocess.run([*mrimpute, "preprocess", str(data), str(pre)], check=True, env=env)
    for config in configs:
        run = work / "runs" / config.stem
        resume = ["--resume"] if RunFolder(run).config.exists() else []
        subprocess.run([*mrimpute, "train", str(pre), "--out", str(run), "--config", str(config), "--split", str(SPLIT),
                        "--threads", "1", "--progress", "none", *resume], check=True, env=env, cwd=work)


def _run_facts(run: RunFolder) -> dict:
    """Epochs done, best validation epoch, training speed: what the table says about each run."""
    history = [h for h in run.read_history() if "epoch" in h]
    best = max((h for h in history if "val_psnr" in h), key=lambda h: h["val_psnr"], default={})
    speeds = [h["slices_per_s"] for h in history if "slices_per_s" in h]
    return {"epochs": len(history), "best_epoch": best.get("epoch"), "val_psnr": best.get("val_psnr"),
            "slices_per_s": sum(speeds) / len(speeds) if speeds else None}


def score(work: Path, runs: list[Path], part: str = "test") -> tuple:
    """Every method on the split's `part` ("test" or "val") in one harness call; (result, contrasts, None)."""
    split = json.loads(SPLIT.read_text())
    pre = work / "preprocessed"
    models = [RunFolder(r).load_model() for r in runs]
    contrasts = models[0].contrasts
    if any(m.contrasts.names != contrasts.names for m in models):
        raise SystemExit("the runs do not share one contrast set")
    imputers = [fit_baseline(pre, split["train"], contrasts)]
    for run, model in zip(runs, models):
        for flip in (False, True) if run.name.startswith(FLIPPED) else (False,):
            imputers.append(SliceImputer(model.generator, model.model_config, model.slicing,
                                         InferenceOptions(batch_size=8, flip_average=flip),
                                         name=run.name + (FLIPS if flip else "")))
    subjects = eval_subjects(load_subjects(pre, split[part], contrasts))
    return evaluate(imputers, subjects, ContrastSet(contrasts.names, contrasts.reference)), contrasts, None


def _cell(row: dict | None, metric: str, digits: int) -> str:
    if not row or row.get(f"{metric}_mean") is None:
        return "–"
    return f"{row[f'{metric}_mean']:.{digits}f} ± {row[f'{metric}_std']:.{digits}f}"


def table(report: dict, facts: dict) -> str:
    """Markdown from results.json: per method the run facts; per scenario × missing contrast, PSNR and SSIM
    (tumour and rest of the brain too) with the difference to linear regression and its paired p-value."""
    linear = report["methods"][0]
    summary = {(r["method"], r["scenario"], r["contrast"]): r for r in report["summary"]}
    tests = {(c["method_a"], c["method_b"], c["scenario"], c["contrast"]): c
             for c in report["comparisons"] if c["metric"] == "psnr"}
    lines = ["| method | epochs (best) | val PSNR | slices/s |", "|---|---|---|---|"]
    for method in report["methods"]:
        fact = facts.get(method, {})
        if method.endswith(FLIPS):  # the same run as the row above it
            continue
        if method == linear:
            lines.append(f"| {method} | fitted on the 48 training patients | – | – |")
            continue
        speed = f"{fact['slices_per_s']:.1f}" if fact.get("slices_per_s") else "–"
        val = f"{fact['val_psnr']:.2f}" if fact.get("val_psnr") else "–"
        lines.append(f"| {method} | {fact.get('epochs')} ({fact.get('best_epoch')}) | {val} | {speed} |")
    cells = [(i["scenario"], i["scenario_label"], c) for i in report["scenarios"] for c in i["missing"]]
    header = "| scenario | synthesized | method | n | PSNR dB | Δ linear (p) | SSIM | tumour SSIM | rest-of-brain SSIM |"
    lines += ["", header, "|---|---|---|---|---|---|---|---|---|"]
    for bits, label, contrast in cells + [("overall", "Overall", "all")]:
        base = summary.get((linear, bits, contrast))
        for method in report["methods"]:
            row = summary.get((method, bits, contrast))
            delta = "–"
            if method != linear and row and base:
                test = tests.get((linear, method, bits, contrast))
                p = f" ({test['p_value']:.3f})" if test else ""
                delta = f"{row['psnr_mean'] - base['psnr_mean']:+.2f}{p}"
            lines.append(f"| {label} | {contrast} | {method} | {row['n'] if row else 0} | {_cell(row, 'psnr', 2)} | "
                         f"{delta} | {_cell(row, 'ssim', 3)} | {_cell(row, 'tumour_ssim', 3)} | "
                         f"{_cell(row, 'nontumour_ssim', 3)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "lgg")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--train", action="store_true", help="train (or resume) every configuration first")
    parser.add_argument("--configs", nargs="*", help="config names (default: every configs/lgg-*.json)")
    parser.add_argument("--out", type=Path, help="the compact Markdown table")
    parser.add_argument("--table-only", action="store_true", help="redo the table from WORK/eval/results.json")
    parser.add_argument("--part", choices=("test", "val"), default="test",
                        help="the split's test patients (default) or its validation patients")
    args = parser.parse_args()
    configs = [c for c in CONFIGS if not args.configs or c.stem in args.configs]
    if args.train:
        train(args.data, args.work, configs)
    runs = [args.work / "runs" / c.stem for c in configs if RunFolder(args.work / "runs" / c.stem).holds_run()]
    report = args.work / ("eval" if args.part == "test" else "eval-val")
    if not args.table_only:
        result, contrasts, _ = score(args.work, runs, args.part)
        write_report(result, report, title=f"LGG {args.part} patients, {', '.join(contrasts.names)}")
    facts = {run.name: _run_facts(RunFolder(run)) for run in runs}
    text = table(json.loads((report / "results.json").read_text()), facts)
    print(text)
    if args.out:
        command = "--train" if args.part == "test" else "--part val"
        args.out.write_text(f"`python Testing/Benchmarks/bench_lgg.py --work WORK {command}` ({args.part} patients)\n\n{text}")


if __name__ == "__main__":
    main()
