"""The four-contrast model (T1, T1c, T2, FLAIR) from incomplete data: 48 LGG patients without T2 and the
real four-contrast cases, scored where ground truth exists.

    python Testing/Benchmarks/bench_four.py --work WORK [--train] --out Testing/Benchmarks/results/four.md

With --train: WORK/four-raw links the 60 LGG patients and the three real cases (../shared/data),
`mrimpute preprocess` makes WORK/four-preprocessed, and configs/four-faithful-narrow.json is trained
three times, each leaving one real case out (splits/four-loo-<case>.json: the LGG split's 48
training patients + the two other real cases; validation: the 4 LGG validation patients).

Two tables, one harness call each (EVALUATION.md metrics, cells scored only on subjects that have
the cell's inputs and target, their n shown):
1. LGG test patients (8, no T2, so cells without T2): the model that left TCGA-DU-7294 out (the same
   person as LGG test patient TCGA_DU_7294_19890104, so that model never saw any test patient),
   linear regression fitted on the same training subjects, and the shipped three-contrast model.
2. The three real cases, leave-one-out: each scored by the model (and linear regression) trained
   without it, every cell, T2 included (the only T2 ground truth here); the three-contrast model beside.
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
from MRImputationLib.evaluation.harness import EvaluationResult, eval_subjects, evaluate  # noqa: E402
from MRImputationLib.evaluation.reports import write_report  # noqa: E402
from MRImputationLib.evaluation.subset import ContrastSubsetImputer  # noqa: E402
from MRImputationLib.imputation.slice_imputer import InferenceOptions, SliceImputer  # noqa: E402
from MRImputationLib.models.loading import load_model  # noqa: E402
from MRImputationLib.models.store import BUILTIN_MODELS  # noqa: E402
from MRImputationLib.pipelines.evaluate import fit_baseline  # noqa: E402
from MRImputationLib.preprocessing.preprocessed import load_subjects  # noqa: E402
from MRImputationLib.training.run_folder import RunFolder  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
CASES = ("TCGA-DU-7294", "BraTS-GLI-00001-000", "BraTS-MET-00110-000")
FOUR = ContrastSet(("T1", "T1c", "T2", "FLAIR"), "T1")
CONFIG = HERE / "configs" / "four-faithful-narrow.json"
THREE = "lgg-t1-t1c-flair"
NAMES = ("linear", "MM-GAN 4-contrast", "MM-GAN 3-contrast (shipped)")


def split_of(case: str) -> dict:
    return json.loads((HERE / "splits" / f"four-loo-{case}.json").read_text())


def train(work: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "MRImputation")}
    mrimpute = [sys.executable, "-m", "MRImputationLib"]
    raw, pre = work / "four-raw", work / "four-preprocessed"
    if not (pre / "manifest.json").exists():
        raw.mkdir(parents=True, exist_ok=True)
        for folder in [*sorted((SHARED / "lgg").glob("TCGA_*")), *(SHARED / "real" / c for c in CASES)]:
            if not (raw / folder.name).exists():
                (raw / folder.name).symlink_to(folder)
        subprocess.run([*mrimpute, "preprocess", str(raw), str(pre), "--progress", "none"], check=True, env=env)
    for case in CASES:
        run = work / "runs" / f"four-loo-{case}"
        resume = ["--resume"] if RunFolder(run).config.exists() else []
        subprocess.run([*mrimpute, "train", str(pre), "--out", str(run), "--config", str(CONFIG), "--contrasts",
                        ",".join(FOUR.names), "--split", str(HERE / "splits" / f"four-loo-{case}.json"), "--threads",
                        "1", "--progress", "none", *resume], check=True, env=env)


def imputers_for(work: Path, case: str, shipped) -> list:
    """Linear regression and the four-contrast model trained without `case`, and the three-contrast model."""
    run = RunFolder(work / "runs" / f"four-loo-{case}")
    model = run.load_model()
    linear = fit_baseline(work / "four-preprocessed", split_of(case)["train"], FOUR)
    four = SliceImputer(model.generator, model.model_config, model.slicing, InferenceOptions(batch_size=8), name=NAMES[1])
    three = ContrastSubsetImputer(SliceImputer(shipped.generator, shipped.model_config, shipped.slicing,
                                               InferenceOptions(batch_size=8), name=NAMES[2]), shipped.contrasts, FOUR)
    return [linear, four, three]


def score(work: Path) -> tuple[EvaluationResult, EvaluationResult]:
    pre = work / "four-preprocessed"
    shipped = load_model(BUILTIN_MODELS / THREE)
    lgg_test = [s for s in split_of(CASES[0])["test"] if s not in CASES]
    on_lgg = evaluate(imputers_for(work, CASES[0], shipped), eval_subjects(load_subjects(pre, lgg_test, FOUR)), FOUR)
    parts = [evaluate(imputers_for(work, case, shipped), eval_subjects(load_subjects(pre, [case], FOUR)), FOUR,
                      keep_examples=1 if case == CASES[0] else 0) for case in CASES]
    on_real = EvaluationResult(rows=[r for p in parts for r in p.rows], examples=parts[0].examples,
                               methods=list(NAMES), scenarios=parts[0].scenarios)
    return on_lgg, on_real


def _cell(row: dict | None, metric: str, digits: int) -> str:
    if not row or not row.get("n"):
        return "–"
    return f"{row[f'{metric}_mean']:.{digits}f} ± {row[f'{metric}_std']:.{digits}f}"


def table(report: dict) -> str:
    """Per scenario × missing contrast with any scored subject: every method's n, PSNR, Δ linear (p), SSIM."""
    summary = {(r["method"], r["scenario"], r["contrast"]): r for r in report["summary"]}
    tests = {(c["method_a"], c["method_b"], c["scenario"], c["contrast"]): c
             for c in report["comparisons"] if c["metric"] == "psnr"}
    lines = ["| scenario | synthesized | method | n | PSNR dB | Δ linear (p) | SSIM |", "|---|---|---|---|---|---|---|"]
    cells = [(i["scenario"], i["scenario_label"], c) for i in report["scenarios"] for c in i["missing"]]
    for bits, label, contrast in cells + [("overall", "Overall", "all")]:
        base = summary.get((NAMES[0], bits, contrast))
        if not base or not base["n"]:
            continue
        for method in report["methods"]:
            row = summary.get((method, bits, contrast))
            delta = "–"
            if method != NAMES[0] and row and row["n"]:
                test = tests.get((NAMES[0], method, bits, contrast))
                delta = f"{row['psnr_mean'] - base['psnr_mean']:+.2f}" + (f" ({test['p_value']:.3f})" if test else "")
            lines.append(f"| {label} | {contrast} | {method} | {row['n'] if row else 0} | {_cell(row, 'psnr', 2)} | "
                         f"{delta} | {_cell(row, 'ssim', 3)} |")
    return "\n".join(lines) + "\n"


CARD = {
    "description": "MM-GAN-family generator for the (T1, T1c, T2, FLAIR) contrast set, any given -> the others, "
                   "trained on incomplete data: 48 TCGA-LGG patients without T2 (Buda et al., Computers in Biology "
                   "and Medicine 2019; TCIA TCGA-LGG) and two real four-contrast cases (BraTS 2023 "
                   "BraTS-GLI-00001-000 and BraTS-MET-00110-000), each subject learning from the contrasts it has. "
                   "T2 was seen in those two cases only. Validation: the 4 LGG validation patients (no T2). "
                   "Measured (metrics, and the README from Testing/Benchmarks/results/four.md) on the 8 LGG test "
                   "patients and, for T2, on the third real case TCGA-DU-7294, which it never saw; leave-one-out "
                   "models gave the two other T2 scores. Preprocessing: N4, rigid registration, brain mask, "
                   "per-volume percentile normalization. Bounded CPU training (bf16, 1 thread, "
                   "Testing/Benchmarks/configs/four-faithful-narrow.json).",
    "intended_use": "Research use only, non-commercial; not for diagnosis or treatment. Adult glioma and metastasis "
                    "brain MRI preprocessed like its training data. T2 synthesis rests on two training cases and is "
                    "a demonstration of learning from incomplete archives, not a validated T2 model. Not for other "
                    "contrasts (PD), other anatomy or children. Check the self-check and error maps; a synthetic "
                    "contrast is not an acquired one.",
    "license": "Weights: research, non-commercial use (CC BY-NC-SA 4.0, inherited from the Kaggle release of the "
               "LGG data; TCGA-LGG images TCIA CC BY 3.0; BraTS 2023 cases for research with attribution). Cite "
               "Buda et al. 2019, TCIA and BraTS 2023.",
    "training_data": "../shared/data/lgg (TCGA-LGG, Buda et al. 2019; the split's 48 training patients) and "
                     "../shared/data/real BraTS-GLI-00001-000, BraTS-MET-00110-000, preprocessed by `mrimpute preprocess`",
}


def card(on_lgg: dict, on_real: dict) -> dict:
    """The shipped model's card: CARD with its measured rows (the model and linear regression, per cell)."""
    keep = ("scenario", "scenario_label", "contrast", "n", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std")

    def rows(report, method):
        return [{k: (round(r[k], 4) if isinstance(r[k], float) else r[k]) for k in keep}
                for r in report["summary"] if r["method"] == method and r["n"]]
    return {**CARD, "metrics": {
        "test_lgg": {"subjects": "the 8 LGG test patients of splits/four-loo-TCGA-DU-7294.json (no T2)",
                     "model": rows(on_lgg, NAMES[1]), "linear": rows(on_lgg, NAMES[0])},
        "real_leave_one_out": {"subjects": "the three real cases, each scored by the model trained without it "
                                           "(this bundle for TCGA-DU-7294)",
                               "model": rows(on_real, NAMES[1]), "linear": rows(on_real, NAMES[0])}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--train", action="store_true", help="preprocess and train (or resume) first")
    parser.add_argument("--out", type=Path, help="the compact Markdown tables")
    parser.add_argument("--card", type=Path, help="write the shipped model's card (with the measured rows) here")
    args = parser.parse_args()
    if args.train:
        train(args.work)
    on_lgg, on_real = score(args.work)
    texts, reports = [], []
    for result, folder, title in ((on_lgg, "eval-four-lgg", "LGG test patients (8; no T2)"),
                                  (on_real, "eval-four-real", "The three real four-contrast cases, leave-one-out")):
        files = write_report(result, args.work / folder, title=title)
        reports.append(json.loads(Path(files["json"]).read_text()))
        texts.append(f"#### {title}\n\n" + table(reports[-1]))
    if args.card:
        args.card.write_text(json.dumps(card(*reports), indent=2) + "\n")
    text = "\n".join(texts)
    print(text)
    if args.out:
        args.out.write_text(f"`python Testing/Benchmarks/bench_four.py --work WORK --train`\n\n{text}")


if __name__ == "__main__":
    main()
