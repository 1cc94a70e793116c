"""`mrimpute train`: data folder -> preprocessed -> split -> slice cache -> MM-GAN training run.

A run folder (`training.run_folder.RunFolder`, which owns its layout) holds everything needed to
continue or to export.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ..core.atomic import write_text
from ..core.outputs import check_output_folder
from ..core.contrasts import ContrastSet
from ..core.errors import InputError
from ..core.progress import Progress
from ..training.config import TrainConfig, train_preset
from ..training.run_folder import RunFolder


def check_train_data(data: Path, out: Path, resume: bool) -> None:
    """Fast checks before torch is imported: the run folder (writable, not a file; with --resume, a run), then
    the data folder."""
    from ..data.discovery import discover_subjects
    from ..preprocessing.manifest import MANIFEST_NAME

    check_output_folder(out, "--out")
    if resume and not RunFolder(out).config.exists():
        raise InputError(f"{out}: no training run to resume (config.json missing); start it without --resume.")
    if not data.is_dir():
        raise InputError(f"{data}: the data folder does not exist. Give a folder of subjects (raw, one folder or "
                         "file set per subject) or a folder written by `mrimpute preprocess`.")
    if not (data / MANIFEST_NAME).exists():
        discover_subjects(data)  # InputError naming the folder when it holds no subject image


def resolve_preprocessed(data: Path, run: Path, progress: Progress, jobs: int = 1) -> Path:
    """A preprocessed folder as is; a raw folder is preprocessed into RUN/preprocessed first (once)."""
    from ..preprocessing.folder import preprocess_folder
    from ..preprocessing.manifest import MANIFEST_NAME
    from ..preprocessing.subject import PreprocessConfig

    data = Path(data)
    if (data / MANIFEST_NAME).exists():
        return data
    target = RunFolder(run).preprocessed
    if not (target / MANIFEST_NAME).exists():
        progress.log(f"{data} is not preprocessed: preprocessing it into {target}")
        preprocess_folder(data, target, PreprocessConfig(), jobs=jobs, progress=progress)
    return target


def model_config_for(config: TrainConfig, contrasts: ContrastSet):
    """The run's model configuration: its family's preset `config.model`, with `model_overrides` applied;
    InputError when it cannot serve any scenario of `contrasts` (e.g. a VAE-UNet target the set lacks)."""
    from ..models.family import model_config_from_dict, model_preset, served_scenarios

    model = model_preset(config.model, len(contrasts))
    if config.model_overrides:
        data = model.to_dict()
        for key, value in config.model_overrides.items():
            if isinstance(value, dict):
                data[key] = {**data.get(key, {}), **value}
            else:
                data[key] = value
        model = model_config_from_dict(data)
    served_scenarios(model, contrasts)
    return model


def _split_for(run: Path, subjects: list[str], config: TrainConfig, split_file: Path | None, resume: bool):
    from ..data.splits import Split, make_split

    path = RunFolder(run).split
    if split_file:
        split = Split.load(split_file)
    elif path.exists() and resume:
        split = Split.load(path)
    else:
        split = make_split(subjects, seed=config.seed)
    unknown = [s for s in split.train + split.val + split.test if s not in subjects]
    if unknown:
        raise InputError(f"split: subject(s) {', '.join(unknown)} are not among the preprocessed subjects "
                         f"({', '.join(subjects)}).")
    if not split.train:
        raise InputError("split: no training subject.")
    split.save(path)
    return split


def make_validator(preprocessed: Path, names: Sequence[str], contrasts: ContrastSet, model_config, slicing,
                   device: str):
    """Project metrics (EVALUATION.md) of the generator on the validation subjects, every scenario it serves."""
    from ..evaluation.harness import eval_subjects, evaluate
    from ..imputation.slice_imputer import InferenceOptions, SliceImputer
    from ..models.family import served_scenarios
    from ..preprocessing.preprocessed import load_subjects

    subjects = eval_subjects(load_subjects(preprocessed, names, contrasts))
    scenarios = served_scenarios(model_config, contrasts)

    def validate(generator) -> dict:
        was_training = generator.training
        imputer = SliceImputer(generator, model_config, slicing, InferenceOptions(device=device))
        result = evaluate([imputer], subjects, contrasts, scenarios, keep_examples=0)
        generator.train(was_training)
        overall = [r for r in result.summary() if r.get("scenario") == "overall"]
        row = overall[0] if overall else {}
        return {k: row[f"{k}_mean"] for k in ("psnr", "ssim", "mae") if f"{k}_mean" in row}

    return validate


def train_run(data: Path, run: Path, config: str | TrainConfig = "mmgan-faithful", overrides: dict | None = None, *,
              device: str = "auto", resume: bool = False,
              contrast_names: Sequence[str] | None = None, split_file: Path | None = None, jobs: int = 1,
              progress: Progress | None = None) -> dict:
    """Train (or continue) one run; returns the run summary (also written as summary.json).

    `config` is a preset name, a .json file or a TrainConfig; `overrides` are the settings given
    explicitly. With `resume`, the run's own config.json is used, with `overrides` applied (e.g. more epochs).
    """
    from ..models.slicing import SlicingConfig
    from ..preprocessing.manifest import read_manifest
    from ..models.family import family_of
    from ..preprocessing.preprocessed import contrasts_of, usable_subjects
    from ..training.distributed import init_distributed, shutdown_distributed
    from ..training.warm_start import source_run

    progress = progress or Progress("none")
    folder = RunFolder(check_output_folder(run, "--out"))
    run = folder.path
    context = init_distributed(device)
    quiet = progress if context.is_main else Progress("none")
    held = contextlib.ExitStack()  # the run's lock, on the main rank: one training per run folder at a time
    try:
        if context.is_main:
            held.enter_context(folder.lock(quiet.log))
        config = _resolve_config(folder, config, overrides, resume)
        run.mkdir(parents=True, exist_ok=True)
        preprocessed = _shared_preprocessed(Path(data), run, context, quiet, jobs)
        manifest = read_manifest(preprocessed)
        contrasts = folder.read_contrasts() if resume else contrasts_of(manifest, contrast_names or config.contrasts)
        model_config = model_config_for(config, contrasts)
        if config.init_from and not resume:  # before any slice is cached
            source_run(config.init_from, model_config, contrasts)
        # Every subject with at least two of the contrasts teaches a paired model; one suffices unpaired.
        have = usable_subjects(manifest, contrasts, 1 if family_of(model_config).pairing == "unpaired" else 2)
        subjects = list(have)
        slicing = SlicingConfig(size=model_config.image_size, crop=config.crop, skip_empty=config.skip_empty)
        if context.is_main:
            _prepare_run_folder(folder, preprocessed, subjects, config, model_config, contrasts, slicing, split_file,
                                resume, quiet)
        _barrier(context)
        trainer, split, dataset = _start_trainer(folder, preprocessed, config, model_config, contrasts, slicing,
                                                 context, quiet, resume)
        summary = trainer.fit()
        summary.update({"preprocessed": str(preprocessed), "contrasts": contrasts.to_dict(),
                        "train_subjects": len(split.train), "train_slices": len(dataset),
                        "train_subjects_with": _with_each(contrasts, [have[s] for s in split.train]),
                        "scenarios": sorted(trainer.served, reverse=True), **trainer.sampler.describe()})
        if context.is_main:
            write_text(folder.summary, json.dumps(summary, indent=2))
        _barrier(context)  # no rank tears the group down while another still writes or talks
        return summary
    finally:
        held.close()
        shutdown_distributed()


def _resolve_config(folder: RunFolder, config: str | TrainConfig, overrides: dict | None, resume: bool) -> TrainConfig:
    """The run's TrainConfig: its own config.json with --resume, else the preset, file or TrainConfig given."""
    if resume:
        missing = folder.missing()
        if missing:
            raise InputError(f"{folder.path}: cannot resume, {', '.join(missing)} missing; start a new run without "
                             "--resume.")
        saved = {**folder.read_json(folder.config), "stop_after_steps": None}  # a per-call setting
        return apply_overrides(TrainConfig.from_dict(saved), **(overrides or {}))
    if folder.history.exists() or folder.last_checkpoint.exists():
        held = "history.jsonl" if folder.history.exists() else "checkpoints/last.pt"
        raise InputError(f"{folder.path}: already holds a training run ({held}); continue it with --resume, or "
                         "train into a new --out folder.")
    if isinstance(config, TrainConfig):
        return apply_overrides(config, **(overrides or {}))
    return train_preset(config, **(overrides or {}))


def _shared_preprocessed(data: Path, run: Path, context, progress: Progress, jobs: int) -> Path:
    """The preprocessed folder, resolved by the main rank and broadcast to the others."""
    preprocessed = resolve_preprocessed(data, run, progress, jobs) if context.is_main else data
    if context.enabled:
        import torch.distributed as dist

        holder = [str(preprocessed)]
        dist.broadcast_object_list(holder, src=0)
        preprocessed = Path(holder[0])
    return preprocessed


def _prepare_run_folder(folder: RunFolder, preprocessed: Path, subjects: list[str], config: TrainConfig,
                        model_config, contrasts: ContrastSet, slicing, split_file: Path | None, resume: bool,
                        progress: Progress) -> None:
    """Main rank only: the split, config.json, model.json, contrasts.json and the slice cache."""
    from ..training.slice_cache import build_cache

    split = _split_for(folder.path, subjects, config, split_file, resume)
    config.save(folder.config)
    write_text(folder.model, json.dumps(model_config.to_dict(), indent=2))
    write_text(folder.contrasts, json.dumps(contrasts.to_dict(), indent=2))
    build_cache(preprocessed, contrasts, folder.cache, slicing, subjects=split.train + split.val + split.test,
                on_progress=progress.callback("cache"))


def _start_trainer(folder: RunFolder, preprocessed: Path, config: TrainConfig, model_config, contrasts: ContrastSet,
                   slicing, context, progress: Progress, resume: bool) -> tuple:
    """(the Trainer, resumed if asked, the split, the training slices), every rank, once the run folder is ready."""
    from ..data.splits import Split
    from ..models.family import context_slices
    from ..training.slice_cache import SliceDataset
    from ..training.trainer import Trainer

    split = Split.load(folder.split)
    dataset = SliceDataset(folder.cache, split.train, context=context_slices(model_config))
    validator = (make_validator(preprocessed, split.val, contrasts, model_config, slicing, context.device)
                 if split.val and context.is_main else None)
    trainer = Trainer(config, model_config, contrasts, dataset, folder.path, context, progress, validator)
    if resume:
        trainer.resume()
        progress.log(f"resuming at epoch {trainer.state.epoch + 1}, step {trainer.state.step}")
    progress.log(f"training {model_config.name} on {len(split.train)} subject(s), {len(dataset)} slices, "
                 f"{contrasts.names}, {config.epochs} epoch(s), device {context.device}, {context.world_size} "
                 "process(es)")
    have = [tuple(n for n, p in zip(contrasts.names, present) if p) for present in dataset.present]
    counts = _with_each(contrasts, have)
    if any(k < len(have) for k in counts.values()):
        progress.log("incomplete subjects: of the " + f"{len(have)} training subjects, "
                     + ", ".join(f"{k} have {name}" for name, k in counts.items())
                     + "; each learns from the contrasts it has")
    drawn = trainer.sampler.describe()
    if drawn.get("left_out"):
        progress.log(f"left out of training: {', '.join(drawn['left_out'])} (no scenario the model serves fits "
                     "the contrasts they have)")
    if drawn.get("domains"):
        progress.log("unpaired: " + "; ".join(f"{name} from {len(subjects)} subject(s) ({drawn['slices'][name]} slices)"
                                              for name, subjects in drawn["domains"].items())
                     + ", no subject in both")
    return trainer, split, dataset


def _with_each(contrasts: ContrastSet, present: list[tuple[str, ...]]) -> dict[str, int]:
    """How many of the subjects (their contrasts in `present`) have each contrast of the set."""
    return {name: sum(name in have for have in present) for name in contrasts.names}


def _barrier(context) -> None:
    """Wait for every rank (a no-op without distributed training)."""
    if context.enabled:
        import torch.distributed as dist

        dist.barrier()


def apply_overrides(config: TrainConfig, **overrides) -> TrainConfig:
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
