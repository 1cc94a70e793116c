"""The seeds' other families on real data: what unpaired training costs, and the VAE-UNet beside MM-GAN.

    python Testing/Benchmarks/bench_families.py --work WORK [--train] --out Testing/Benchmarks/results/families.md

WORK holds `preprocessed/` (the LGG patients through `mrimpute preprocess`, as bench_lgg.py makes
it) and `runs/`. With --train, each Testing/Benchmarks/configs/families-*.json is trained first
through the command line (resumed where a run exists): the CycleGAN on T1 and FLAIR, unpaired
(each of the 48 training patients seen in one contrast only: two disjoint halves of 24), and the
VAE-UNet for FLAIR from T1 and T1c. The MM-GAN is bench_lgg.py's run `lgg-faithful-narrow` (the
shipped model's run; trained paired on all three contrasts); linear regression is fitted paired on
the same 48 training patients.

Scored in one harness call on the 8 test patients of splits/lgg.json, contrasts T1, T1c, FLAIR, in
three scenarios: T1 -> FLAIR (T1 given), FLAIR -> T1 (FLAIR given) and T1, T1c -> FLAIR. Each
method is scored only in the cells it serves (the CycleGAN's two, the VAE-UNet's one; T1c cells
are left out), with mean ± std, n, and paired Wilcoxon tests. The CycleGAN is scored twice: at its
last epoch (the unpaired protocol: nothing paired was used) and at the epoch of best validation
PSNR (chosen on 4 paired validation patients, as the other models are).
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

from MRImputationLib.core.contrasts import ContrastSet, Scenario  # noqa: E402
from MRImputationLib.evaluation.harness import eval_subjects, evaluate  # noqa: E402
from MRImputationLib.evaluation.reports import write_report  # noqa: E402
from MRImputationLib.evaluation.subset import ContrastSubsetImputer  # noqa: E402
from MRImputationLib.imputation.slice_imputer import InferenceOptions, SliceImputer  # noqa: E402
from MRImputationLib.pipelines.evaluate import fit_baseline  # noqa: E402
from MRImputationLib.preprocessing.preprocessed import load_subjects  # noqa: E402
from MRImputationLib.training.run_folder import RunFolder  # noqa: E402

SPLIT = HERE / "splits" / "lgg.json"
CONFIGS = {"families-cyclegan-t1-flair": "T1,FLAIR", "families-vae-unet-flair": "T1,T1c,FLAIR"}
MMGAN_RUN = "lgg-faithful-narrow"
CONTRASTS = ContrastSet(("T1", "T1c", "FLAIR"), "T1")
SCENARIOS = [Scenario("100"), Scenario("001"), Scenario("110")]
CELLS = [("100", "FLAIR"), ("001", "T1"), ("110", "FLAIR")]


def train(work: Path) -> None:
    """Train (or resume) each family's configuration through `mrimpute train`, one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "MRImputation")}
    for name, contrasts in CONFIGS.items():
        run = work / "runs" / name
        resume = ["--resume"] if RunFolder(run).config.exists() else []
        subprocess.run([sys.executable, "-m", "MRImputationLib", "train", str(work / "preprocessed"), "--out", str(run),
                        "--config", str(HERE / "configs" / f"{name}.json"), "--contrasts", contrasts, "--split",
                        str(SPLIT), "--threads", "1", "--progress", "none", *resume], check=True, env=env)


def imputer_of(run: Path, name: str, which: str = "best"):
    """The run's best (or last) checkpoint as an imputer of the three-contrast harness, serving what its family
    serves."""
    model = RunFolder(run).load_model(which=which)
    served = [s.bits for s in model.scenarios]
    imputer = SliceImputer(model.generator, model.model_config, model.slicing, InferenceOptions(batch_size=8),
                           name=name, served=served)
    return imputer if model.contrasts.names == CONTRASTS.names else ContrastSubsetImputer(imputer, model.contrasts,
                                                                                          CONTRASTS)


def score(work: Path):
    split = json.loads(SPLIT.read_text())
    pre = work / "preprocessed"
    imputers = [fit_baseline(pre, split["train"], CONTRASTS), imputer_of(work / "runs" / MMGAN_RUN, "MM-GAN (paired)"),
                imputer_of(work / "runs" / "families-cyclegan-t1-flair", "CycleGAN (unpaired, last epoch)", "last"),
                imputer_of(work / "runs" / "families-cyclegan-t1-flair", "CycleGAN (unpaired, best val epoch)"),
                imputer_of(work / "runs" / "families-vae-unet-flair", "VAE-UNet")]
    subjects = eval_subjects(load_subjects(pre, split["test"], CONTRASTS))
    result = evaluate(imputers, subjects, CONTRASTS, SCENARIOS)
    result.rows = [r for r in result.rows if (r["scenario"], r["contrast"]) in CELLS]
    result.examples = [e for e in result.examples if (e.scenario, e.contrast) in CELLS]
    for info in result.scenarios:
        info["missing"] = [c for c in info["missing"] if (info["scenario"], c) in CELLS]
    return result


def _cell(row: dict | None, metric: str, digits: int) -> str:
    if not row or not row.get("n") or row.get(f"{metric}_mean") is None:
        return "–"
    return f"{row[f'{metric}_mean']:.{digits}f} ± {row[f'{metric}_std']:.{digits}f}"


def table(report: dict) -> str:
    """Per cell and method: n, PSNR, the difference to linear regression and to MM-GAN with paired p-values,
    SSIM, tumour SSIM."""
    linear, mmgan = report["methods"][0], report["methods"][1]
    summary = {(r["method"], r["scenario"], r["contrast"]): r for r in report["summary"]}
    tests = {(c["method_a"], c["method_b"], c["scenario"], c["contrast"]): c
             for c in report["comparisons"] if c["metric"] == "psnr"}

    def delta(method, other, bits, contrast):
        row, base = summary.get((method, bits, contrast)), summary.get((other, bits, contrast))
        if method == other or not row or not row["n"] or not base or not base["n"]:
            return "–"
        test = tests.get((other, method, bits, contrast)) or tests.get((method, other, bits, contrast))
        return f"{row['psnr_mean'] - base['psnr_mean']:+.2f}" + (f" ({test['p_value']:.3f})" if test else "")

    lines = ["| scenario | synthesized | method | n | PSNR dB | Δ linear (p) | Δ MM-GAN (p) | SSIM | tumour SSIM |",
             "|---|---|---|---|---|---|---|---|---|"]
    labels = {i["scenario"]: i["scenario_label"].split("→")[0] for i in report["scenarios"]}
    for bits, contrast in CELLS:
        for method in report["methods"]:
            row = summary.get((method, bits, contrast))
            if not row or not row["n"]:
                continue
            lines.append(f"| {labels[bits]} → {contrast} | {contrast} | {method} | {row['n']} | {_cell(row, 'psnr', 2)} | "
                         f"{delta(method, linear, bits, contrast)} | {delta(method, mmgan, bits, contrast)} | "
                         f"{_cell(row, 'ssim', 3)} | {_cell(row, 'tumour_ssim', 3)} |")
    return "\n".join(lines) + "\n"


def _facts(work: Path) -> str:
    lines = ["| run | epochs (best) | val PSNR (its scenarios) | slices/s |", "|---|---|---|---|"]
    for name in (MMGAN_RUN, *CONFIGS):
        history = [h for h in RunFolder(work / "runs" / name).read_history() if "epoch" in h]
        best = max((h for h in history if "val_psnr" in h), key=lambda h: h["val_psnr"], default={})
        speeds = [h["slices_per_s"] for h in history if "slices_per_s" in h]
        speed = f"{sum(speeds) / len(speeds):.1f}" if speeds else "–"
        lines.append(f"| {name} | {len(history)} ({best.get('epoch')}) | {best.get('val_psnr', float('nan')):.2f} | {speed} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--train", action="store_true", help="train (or resume) the families' configurations first")
    parser.add_argument("--out", type=Path, help="the compact Markdown table")
    args = parser.parse_args()
    if args.train:
        train(args.work)
    result = score(args.work)
    files = write_report(result, args.work / "eval-families", title="LGG test patients: families")
    text = _facts(args.work) + "\n" + table(json.loads(Path(files["json"]).read_text()))
    print(text)
    if args.out:
        args.out.write_text(f"`python Testing/Benchmarks/bench_families.py --work WORK --train`\n\n{text}")


if __name__ == "__main__":
    main()
