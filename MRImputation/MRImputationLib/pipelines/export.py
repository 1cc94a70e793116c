"""`mrimpute export RUN BUNDLE`: a model bundle (bundle.json + generator.safetensors) from a run."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import InputError

INTENDED_USE = (
    "Research use only; not for diagnosis. Synthesizes missing MRI contrasts of adult brain scans like "
    "the training data (see training). Check the self-check and error maps before trusting a result; "
    "expect poor results on other anatomy, pathology, field strengths or sequences than it was trained on."
)


def export_run(run: str | Path, bundle: str | Path, name: str | None = None, version: str = "0.1.0",
               which: str = "best", as_zip: bool = False) -> Path:
    from .. import __version__
    from ..models.bundle import BundleInfo, write_bundle, zip_bundle
    from ..models.loading import run_weights
    from ..core.contrasts import ContrastSet
    from ..preprocessing.manifest import read_manifest

    run, bundle = Path(run), Path(bundle)
    for needed in ("config.json", "model.json", "contrasts.json"):
        if not (run / needed).exists():
            raise InputError(f"{run}: not a training run ({needed} missing); give the folder passed to `train --out`.")
    config = json.loads((run / "config.json").read_text())
    model = json.loads((run / "model.json").read_text())
    contrasts = ContrastSet.from_dict(json.loads((run / "contrasts.json").read_text()))
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    split = json.loads((run / "split.json").read_text()) if (run / "split.json").exists() else {}
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()] \
        if (run / "history.jsonl").exists() else []
    preprocess = {}
    if summary.get("preprocessed"):
        try:
            preprocess = read_manifest(summary["preprocessed"])["config"]
        except InputError:
            preprocess = {}
    metrics = {}
    results = run / "evaluation" / "results.json"
    if results.exists():
        metrics = {"test": [r for r in json.loads(results.read_text()).get("summary", []) if r.get("scenario") == "overall"]}
    if history and any("val_psnr" in h for h in history):
        best = max((h for h in history if "val_psnr" in h), key=lambda h: h["val_psnr"])
        metrics["validation_best"] = {k: best[k] for k in ("epoch", "val_psnr", "val_ssim", "val_mae") if k in best}
    weights, checkpoint = run_weights(run, which)
    info = BundleInfo(
        name=name or f"{model['name']}-{'-'.join(contrasts.names)}",
        version=version,
        contrasts=list(contrasts.names),
        reference=contrasts.reference,
        normalization=_normalization(run, preprocess.get("normalization", "percentile")),
        preprocessing={"n4": preprocess.get("n4", True), "registration": preprocess.get("registration_kind", "rigid"),
                       "slicing": {"size": model["image_size"], "crop": config["crop"],
                                   "skip_empty": config["skip_empty"], "margin_mm": 8.0}},
        model=model,
        training={"software": f"MRImputationLib {__version__}", "config": config, "checkpoint": checkpoint,
                  "epochs_done": summary.get("epochs_done"), "train_subjects": summary.get("train_subjects"),
                  "train_slices": summary.get("train_slices"), "data": summary.get("preprocessed"), "split": split},
        metrics=metrics,
        scenarios=[s.bits for s in contrasts.scenarios()],
        intended_use=INTENDED_USE,
        license="Apache-2.0 (weights); check the training data's own terms",
    )
    folder = bundle.with_suffix("") if as_zip or bundle.suffix == ".zip" else bundle
    write_bundle(folder, info, {"generator": weights})
    if as_zip or bundle.suffix == ".zip":
        return zip_bundle(folder, folder.with_suffix(".zip"))
    return folder


def _normalization(run: Path, method: str) -> dict:
    """The normalization the training slices went through, as recorded in the run's slice cache
    (imputation must repeat it exactly); the current default for `method` if the cache is gone."""
    from ..preprocessing.normalization import NormalizationConfig

    index = run / "cache" / "index.json"
    if index.exists():
        for subject in json.loads(index.read_text()).get("subjects", {}).values():
            for params in subject.get("normalization", {}).values():
                return NormalizationConfig.from_record(params).to_record()
    return NormalizationConfig(method=method).to_record()
