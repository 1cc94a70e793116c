"""`mrimpute export RUN BUNDLE`: a model bundle (bundle.json + generator.safetensors) from a run."""

from __future__ import annotations

import json
from pathlib import Path

INTENDED_USE = (
    "Research use only; not for diagnosis. Synthesizes missing MRI contrasts of adult brain scans like "
    "the training data (see training). Check the self-check and error maps before trusting a result; "
    "expect poor results on other anatomy, pathology, field strengths or sequences than it was trained on."
)


def export_run(run: str | Path, bundle: str | Path, name: str | None = None, version: str = "0.1.0",
               which: str = "best", as_zip: bool = False) -> Path:
    from .. import __version__
    from ..models.bundle import BundleInfo, write_bundle, zip_bundle
    from ..models.family import family_of
    from ..training.run_folder import RunFolder

    folder_of_run, bundle = RunFolder(run), Path(bundle)
    folder_of_run.require()
    config = folder_of_run.read_json(folder_of_run.config)
    model = folder_of_run.read_json(folder_of_run.model)
    contrasts = folder_of_run.read_contrasts()
    summary = folder_of_run.read_json(folder_of_run.summary, default={})
    split = folder_of_run.read_json(folder_of_run.split, default={})
    history = folder_of_run.read_history()
    metrics = {}
    results = folder_of_run.evaluation / "results.json"
    if results.exists():
        metrics = {"test": [r for r in json.loads(results.read_text()).get("summary", []) if r.get("scenario") == "overall"]}
    if history and any("val_psnr" in h for h in history):
        best = max((h for h in history if "val_psnr" in h), key=lambda h: h["val_psnr"])
        metrics["validation_best"] = {k: best[k] for k in ("epoch", "val_psnr", "val_ssim", "val_mae") if k in best}
    weights, checkpoint = folder_of_run.weights(which)
    info = BundleInfo(
        name=name or f"{model['name']}-{'-'.join(contrasts.names)}",
        version=version,
        contrasts=list(contrasts.names),
        reference=contrasts.reference,
        **folder_of_run.as_trained().bundle_fields(),
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
    write_bundle(folder, info, {family_of(folder_of_run.read_model_config()).inference_network: weights})
    if as_zip or bundle.suffix == ".zip":
        return zip_bundle(folder, folder.with_suffix(".zip"))
    return folder
