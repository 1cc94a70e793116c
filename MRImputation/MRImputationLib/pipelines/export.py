"""`mrimpute export RUN BUNDLE`: a model bundle (bundle.json + generator.safetensors) from a run.

With `--half` the weights are stored as float16 (half the size; loading casts them back to float32).
The bundle also carries the linear baseline fitted on the run's training split, exactly as
`mrimpute evaluate` fits it (pipelines/evaluate.py: `fit_baseline`), as `baseline.safetensors`,
when the run's preprocessed data is still there (else it is left out, and said so); `evaluate`
then scores the model on any data beside that baseline (EVALUATION.md).

BUNDLE is checked before the run is read: it must be absent or a bundle (a folder of bundle.json and
.safetensors files, or a zip holding bundle.json), which is then replaced whole and atomically;
anything else there (another folder, the run itself, a file) is refused, never moved or emptied. A
.zip is built in a temporary folder beside it, so no loose bundle folder is left next to the zip.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from ..core.errors import InputError
from ..core.outputs import check_output_file, check_output_folder, entries
from ..core.progress import Progress

INTENDED_USE = (
    "Research use only; not for diagnosis. Synthesizes missing MRI contrasts of adult brain scans like "
    "the training data (see training). Check the self-check and error maps before trusting a result; "
    "expect poor results on other anatomy, pathology, field strengths or sequences than it was trained on."
)


def export_run(run: str | Path, bundle: str | Path, name: str | None = None, version: str = "0.1.0",
               which: str = "best", as_zip: bool = False, half: bool = False, baseline: bool = True,
               progress: Progress | None = None, card: dict | None = None, flip_average: bool = False) -> Path:
    """A bundle of the run's best (or last) weights; `card` sets the model card's `description`,
    `intended_use`, `license`, adds its `metrics` (e.g. the measured test table) and with
    `training_data` says where the data came from instead of the training machine's path. With
    `flip_average` the bundle says to impute with test-time flips (as it was measured)."""
    from .. import __version__
    from ..models.bundle import BundleInfo
    from ..models.family import served_scenarios
    from ..training.run_folder import RunFolder

    folder_of_run, bundle = RunFolder(run), Path(bundle)
    zipped = as_zip or bundle.suffix == ".zip"
    bundle = bundle if not zipped or bundle.suffix == ".zip" else bundle.with_suffix(".zip")
    check_bundle_destination(bundle, folder_of_run.path, zipped)
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
                  "epochs_done": _epochs_done(summary, history), "train_subjects": summary.get("train_subjects"),
                  "train_slices": summary.get("train_slices"), "data": summary.get("preprocessed"), "split": split},
        metrics=metrics,
        scenarios=[s.bits for s in served_scenarios(folder_of_run.read_model_config(), contrasts)],
        intended_use=INTENDED_USE,
        license="Apache-2.0 (weights); check the training data's own terms",
        inference={"flip_average": True} if flip_average else {},
    )
    _apply_card(info, card or {})
    linear = training_baseline(folder_of_run, contrasts, progress or Progress("none")) if baseline else None
    if linear is not None:
        info.baseline = {"fitted_on": f"the training split of run {folder_of_run.path.resolve().name} "
                                      f"({linear.n_subjects} subjects)"}
    return _write(bundle, zipped, info, {_inference_network(folder_of_run): weights}, linear, half)


def _epochs_done(summary: dict, history: list[dict]) -> int | None:
    """Epochs the run has finished: its history's last epoch (a run stopped and resumed writes no summary
    until a call finishes), else the summary's."""
    epochs = [h["epoch"] for h in history if isinstance(h.get("epoch"), int)]
    return max(epochs) if epochs else summary.get("epochs_done")


def _inference_network(run) -> str:
    from ..models.family import family_of

    return family_of(run.read_model_config()).inference_network


def _write(bundle: Path, zipped: bool, info, weights: dict, linear, half: bool) -> Path:
    """The bundle folder at `bundle`, or the zip: its folder built in a temporary sibling, zipped, then removed."""
    from ..core.atomic import temporary_sibling
    from ..models.bundle import write_bundle, zip_bundle

    if not zipped:
        return write_bundle(bundle, info, weights, baseline=linear, half=half)
    stage = temporary_sibling(bundle, directory=True)
    try:
        folder = write_bundle(stage / bundle.with_suffix("").name, info, weights, baseline=linear, half=half)
        return zip_bundle(folder, bundle)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


BUNDLE_FILE_SUFFIX = ".safetensors"


def is_bundle_folder(path: Path) -> bool:
    """A folder export may replace: bundle.json and .safetensors files, nothing else."""
    names = entries(path)
    return ("bundle.json" in names and
            all((path / n).is_file() and (n == "bundle.json" or n.endswith(BUNDLE_FILE_SUFFIX)) for n in names))


def is_zipped_bundle(path: Path) -> bool:
    """A zip holding bundle.json (at its root or in one top-level folder)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/")[-1] == "bundle.json" and name.count("/") <= 1 for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def check_bundle_destination(bundle: Path, run: Path | None, zipped: bool) -> None:
    """InputError unless BUNDLE is absent or a bundle (replaced whole), and neither is nor holds the run."""
    if run is not None and (run.resolve() == bundle.resolve() or bundle.resolve() in run.resolve().parents):
        raise InputError(f"BUNDLE {bundle}: it is (or holds) the run {run}; exporting there would delete the run. "
                         "Give a new path for the bundle, e.g. a folder beside the run.")
    if zipped:
        check_output_file(bundle, "BUNDLE")
        if bundle.exists() and not is_zipped_bundle(bundle):
            raise InputError(f"BUNDLE {bundle}: this file is not a zipped model bundle, and export replaces only a "
                             "bundle. Move it away or give another path.")
        return
    check_output_folder(bundle, "BUNDLE", replaced_whole=True)
    names = entries(bundle)
    if names and not is_bundle_folder(bundle):
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise InputError(f"BUNDLE {bundle}: this folder is not a model bundle (it holds {shown}); export replaces "
                         "only a bundle (bundle.json and .safetensors files), whole. Give a new or empty folder.")


def training_baseline(run, contrasts, progress: Progress):
    """The linear baseline fitted on the run's training split (its subjects in the run's preprocessed data),
    or None, said in the log, when that data is gone or holds none of them."""
    from ..preprocessing.manifest import MANIFEST_NAME, read_manifest
    from ..preprocessing.preprocessed import usable_subjects
    from .evaluate import fit_baseline

    summary = run.read_json(run.summary, default={})
    places = [Path(summary["preprocessed"])] if summary.get("preprocessed") else []
    places = [p for p in places + [run.preprocessed] if (p / MANIFEST_NAME).is_file()]
    if not places:
        progress.log("no linear baseline in the bundle: the run's preprocessed data is not here "
                     f"({summary.get('preprocessed') or run.preprocessed}); evaluate fits one on its own data")
        return None
    available = usable_subjects(read_manifest(places[0]), contrasts, least=2, refuse_short=False)
    train = [s for s in run.read_json(run.split, default={}).get("train", []) if s in available]
    if not train:
        progress.log(f"no linear baseline in the bundle: no training subject of the run's split is in {places[0]}")
        return None
    progress.log(f"fitting the linear baseline on the run's {len(train)} training subject(s) for the bundle")
    return fit_baseline(places[0], train, contrasts)


CARD_FIELDS = ("description", "intended_use", "license", "metrics", "training_data")


def _apply_card(info, card: dict) -> None:
    """The model card's own words over the defaults; an unknown field is a bad input."""
    unknown = sorted(set(card) - set(CARD_FIELDS))
    if unknown:
        raise InputError(f"model card: unknown field(s) {', '.join(unknown)}; use {', '.join(CARD_FIELDS)}.")
    for key in ("description", "intended_use", "license"):
        if key in card:
            setattr(info, key, str(card[key]))
    info.metrics.update(card.get("metrics", {}))
    if "training_data" in card:  # instead of the training machine's path, for a bundle that is shared
        info.training["data"] = str(card["training_data"])
