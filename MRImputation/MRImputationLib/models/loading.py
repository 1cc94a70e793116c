"""A trained generator from a model bundle (or straight from a training run folder)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError
from ..core.contrasts import ContrastSet
from .mmgan.config import ModelConfig
from ..training.slice_cache import CacheConfig


@dataclass
class LoadedModel:
    generator: object  # torch.nn.Module
    model_config: ModelConfig
    contrasts: ContrastSet
    slicing: CacheConfig
    info: dict  # bundle.json as written (with the weights' SHA-256), or the run's equivalent
    source: Path


def load_model(path: str | Path, device: str = "cpu") -> LoadedModel:
    """From a bundle folder/.zip (hash-checked) or a run folder (its best, else last, checkpoint)."""
    from .mmgan.networks import build_generator

    path = Path(path)
    if path.is_dir() and (path / "model.json").exists() and (path / "checkpoints").is_dir():
        return _from_run(path)
    from .bundle import load_bundle, read_bundle_info

    bundle = load_bundle(path)
    info = bundle.info
    _, document = read_bundle_info(path)
    model_config = info.model_config()
    generator = build_generator(model_config)
    generator.load_state_dict(bundle.weights["generator"])
    slicing = CacheConfig.from_dict(info.preprocessing.get("slicing", {"size": model_config.image_size}))
    return LoadedModel(generator.eval(), model_config, ContrastSet(tuple(info.contrasts), info.reference), slicing,
                       document, path)


def run_weights(run: Path, which: str = "best") -> tuple[dict, str]:
    """The generator weights of a run: best.pt (highest validation PSNR) when present, else last.pt."""
    from ..training.checkpoint import load_checkpoint

    best, last = run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt"
    chosen = best if which == "best" and best.exists() else last
    if not chosen.exists():
        raise InputError(f"{run}: no checkpoint found; train first.")
    return load_checkpoint(chosen)["generator"], chosen.name


def _from_run(run: Path) -> LoadedModel:
    from .mmgan.networks import build_generator
    from ..training.config import TrainConfig

    model_config = ModelConfig.from_dict(json.loads((run / "model.json").read_text()))
    contrasts = ContrastSet.from_dict(json.loads((run / "contrasts.json").read_text()))
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    generator = build_generator(model_config)
    weights, name = run_weights(run)
    generator.load_state_dict(weights)
    slicing = CacheConfig(size=model_config.image_size, crop=config.crop, skip_empty=config.skip_empty)
    info = {"name": model_config.name, "version": f"run:{run.name}:{name}", "contrasts": list(contrasts.names),
            "reference": contrasts.reference}
    return LoadedModel(generator.eval(), model_config, contrasts, slicing, info, run)
