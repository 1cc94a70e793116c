"""A model card with its measured rows: the card's words plus the test table and the real-case scores.

    python Testing/Benchmarks/card_metrics.py --card Testing/Benchmarks/cards/lgg-t1-t1c-flair.json \
        --lgg WORK/eval/results.json --method lgg-faithful-narrow \
        --real EVAL_REAL/results.json --out CARD_WITH_METRICS.json
    mrimpute export RUN BUNDLE --half --card CARD_WITH_METRICS.json

`--lgg` is bench_lgg.py's report (the 8 LGG test patients), `--real` the report of `mrimpute
evaluate RUN ../shared/data/real --out EVAL_REAL` (the three real cases, linear regression fitted on
the LGG training patients). Per cell and overall: n, PSNR and SSIM mean ± std, tumour and
rest-of-brain SSIM where measured, for the model and for linear regression.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEEP = ("scenario", "scenario_label", "contrast", "n", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std",
        "tumour_ssim_mean", "nontumour_ssim_mean")


def rows(report: dict, method: str) -> list[dict]:
    return [{k: round(r[k], 4) if isinstance(r[k], float) else r[k] for k in KEEP if k in r}
            for r in report["summary"] if r["method"] == method and r.get("n")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", type=Path, required=True)
    parser.add_argument("--lgg", type=Path, required=True)
    parser.add_argument("--method", required=True, help="the model's method name in --lgg")
    parser.add_argument("--real", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    lgg, real = json.loads(args.lgg.read_text()), json.loads(args.real.read_text())
    linear, model_real = real["methods"][0], real["methods"][-1]
    card = {**json.loads(args.card.read_text()), "metrics": {
        "test_lgg": {"subjects": "the 8 test patients of Testing/Benchmarks/splits/lgg.json",
                     "metric": "EVALUATION.md (masked, per volume)",
                     "model": rows(lgg, args.method), "linear_regression": rows(lgg, lgg["methods"][0])},
        "real_cases_domain_shift": {
            "subjects": "BraTS-GLI-00001-000, BraTS-MET-00110-000, TCGA-DU-7294 (skull-stripped, 1 mm; "
                        "../shared/data/real)",
            "model": rows(real, model_real), "linear_regression_fitted_on_lgg": rows(real, linear)}}}
    args.out.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
