"""`mrimpute export RUN BUNDLE`: a model bundle (bundle.json + generator.safetensors) from a run.

With `--half` the weights are stored as float16 (half the size; loading casts them back to float32).
The bundle also carries the linear baseline fitted on the run's training split, exactly as
`mrimpute evaluate` fits it (pipelines/evaluate.py: `fit_baseline`), as `baseline.safetensors`,
when the run's preprocessed data is still there (else it is left out, and said so); `evaluate`
then scores the model on any data beside that baseline (EVALUATION.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import InputError
from ..core.progress import Progress

INTENDED_USE = (
    "Research use only; not for diagnosis. Synthesizes missing MRI contrasts of adult brain scans like "
    "the training data (see training). Check the self-check and error maps before trusting a result; "
    "expect poor results on other anatomy, pathology, field strengths or sequences than it was trained on."
)


def export_run(run: str | Path, bundle: str | Path, name: str | None = None, version: str = "0.1.0",
               which: str = "best", as_zip: bool = False, half: bool = False, baseline: bool = True,
               progress: Progress | None = None, card: dict | None = None) -> Path:
    """A bundle of the run's best (or last) weights; `card` sets the model card's `description`,
    `intended_use`, `license` and adds its `metrics` (e.g. the measured test table)."""
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
    _apply_card(info, card or {})
    folder = bundle.with_suffix("") if as_zip or bundle.suffix == ".zip" else bundle
    linear = training_baseline(folder_of_run, contrasts, progress or Progress("none")) if baseline else None
    if linear is not None:
        info.baseline = {"fitted_on": f"the training split of run {folder_of_run.path.resolve().name} "
                                      f"({linear.n_subjects} subjects)"}
    write_bundle(folder, info, {family_of(folder_of_run.read_model_config()).inference_network: weights},
                 baseline=linear, half=half)
    if as_zip or bundle.suffix == ".zip":
        return zip_bundle(folder, folder.with_suffix(".zip"))
    return folder


def training_baseline(run, contrasts, progress: Progress):
    """The linear baseline fitted on the run's training split (its subjects in the run's preprocessed data),
    or None, said in the log, when that data is gone or holds none of them."""
    from ..preprocessing.manifest import MANIFEST_NAME, read_manifest
    from ..preprocessing.preprocessed import complete_subjects
    from .evaluate import fit_baseline

    summary = run.read_json(run.summary, default={})
    places = [Path(summary["preprocessed"])] if summary.get("preprocessed") else []
    places = [p for p in places + [run.preprocessed] if (p / MANIFEST_NAME).is_file()]
    if not places:
        progress.log("no linear baseline in the bundle: the run's preprocessed data is not here "
                     f"({summary.get('preprocessed') or run.preprocessed}); evaluate fits one on its own data")
        return None
    available = complete_subjects(read_manifest(places[0]), contrasts)
    train = [s for s in run.read_json(run.split, default={}).get("train", []) if s in available]
    if not train:
        progress.log(f"no linear baseline in the bundle: no training subject of the run's split is in {places[0]}")
        return None
    progress.log(f"fitting the linear baseline on the run's {len(train)} training subject(s) for the bundle")
    return fit_baseline(places[0], train, contrasts)


CARD_FIELDS = ("description", "intended_use", "license", "metrics")


def _apply_card(info, card: dict) -> None:
    """The model card's own words over the defaults; an unknown field is a bad input."""
    unknown = sorted(set(card) - set(CARD_FIELDS))
    if unknown:
        raise InputError(f"model card: unknown field(s) {', '.join(unknown)}; use {', '.join(CARD_FIELDS)}.")
    for key in ("description", "intended_use", "license"):
        if key in card:
            setattr(info, key, str(card[key]))
    info.metrics.update(card.get("metrics", {}))
