"""Starting a run from another run's networks (fine-tuning), TrainConfig's `init_from`.

The source run must have the same network configuration and contrasts. Every network its last
checkpoint holds (a GAN's discriminator too) is loaded, then the network that imputes is replaced by
its best checkpoint's (highest validation PSNR), when it has one. Optimizers, schedules and the
data order start afresh: this is a new run, not a resume.

A 2.5-D run (`context_slices` k) may start from a run with fewer neighbours (a single-slice MM-GAN):
the first convolution's weights for the source's channels are copied and the new neighbours' start
at zero, so the new network begins as exactly the source's and learns what the neighbours add.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..core.contrasts import ContrastSet
from ..core.errors import InputError
from ..models.family import context_slices
from .checkpoint import load_checkpoint
from .run_folder import RunFolder


def source_run(source: str | Path, model_config, contrasts: ContrastSet) -> RunFolder:
    """The run `init_from` names, checked (InputError naming it and what is wrong): a run folder with a
    checkpoint, the same network configuration (but for more neighbouring slices) and the same contrasts.
    Cheap: `mrimpute train` calls it before any slice is cached."""
    run = RunFolder(source)
    if not run.holds_run():
        raise InputError(f"init_from {source}: not a training run folder (no config.json); give the folder "
                         "`mrimpute train --out` wrote.")
    theirs = run.read_model_config()
    if not _same_but_context(theirs, model_config):
        raise InputError(f"init_from {source}: its network configuration ({theirs.name}) differs from this run's "
                         f"({model_config.name}); a warm start needs the same one (same model and model_overrides; "
                         "only context_slices may grow).")
    their_contrasts = run.read_contrasts()
    if list(their_contrasts.names) != list(contrasts.names):
        raise InputError(f"init_from {source}: it was trained on {', '.join(their_contrasts.names)}, this run has "
                         f"{', '.join(contrasts.names)}; a warm start needs the same contrasts in the same order.")
    if not (run.last_checkpoint.exists() or run.best_checkpoint.exists()):
        raise InputError(f"init_from {source}: the run has no checkpoint yet; train it first.")
    return run


def warm_start(networks: dict[str, nn.Module], source: str | Path, model_config, contrasts: ContrastSet,
               inference_network: str) -> str:
    """Load `source`'s networks into `networks` (by name); a line saying what was loaded from where."""
    run = source_run(source, model_config, contrasts)
    generator = getattr(model_config, "generator", None)
    extra = int(getattr(generator, "extra_input_channels", 0))
    checkpoints = {path: load_checkpoint(path) for path in (run.best_checkpoint, run.last_checkpoint) if path.exists()}
    loaded = []
    for name, network in networks.items():
        # The network that imputes from best.pt when there is one; every other from last.pt.
        order = (run.best_checkpoint, run.last_checkpoint) if name == inference_network else (run.last_checkpoint,)
        path = next((p for p in order if name in checkpoints.get(p, {})), None)
        if path is not None:
            _load_widened(network, checkpoints[path][name], extra if name == inference_network else 0, source)
            loaded.append(f"{name} ({path.name})")
    return f"warm start from {Path(source)}: " + ", ".join(loaded)


def _same_but_context(theirs, ours) -> bool:
    """The same network configuration, except that `ours` may take more neighbouring slices (2.5-D)."""
    def without_context(config) -> dict:
        data = config.to_dict()
        if isinstance(data.get("generator"), dict):
            data["generator"] = {k: v for k, v in data["generator"].items() if k != "context_slices"}
        return data

    return without_context(theirs) == without_context(ours) and context_slices(theirs) <= context_slices(ours)


FIRST_CONV = "down.0.0.weight"  # the generator's first convolution: (out, input channels, 4, 4)


def _load_widened(network: nn.Module, state: dict, extra: int, source) -> None:
    """`state` into `network`; where only the first convolution's input channels grew (more neighbouring
    slices), the source's channels keep their weights (its `extra` channels, e.g. an availability mask, last
    in both) and the new ones start at zero. Any other difference is an InputError naming the weights."""
    own = network.state_dict()
    widened = {}
    for key, value in state.items():
        target = own.get(key)
        if target is not None and value.shape != target.shape and key != FIRST_CONV:
            raise InputError(f"init_from {source}: its weights {key} {tuple(value.shape)} do not fit this run's "
                             f"{tuple(target.shape)}; only MM-GAN's own head can grow its neighbouring slices from a "
                             "warm start (the full-resolution head also reads the input).")
        if target is not None and key == FIRST_CONV and value.shape != target.shape:
            grown = torch.zeros_like(target)
            contrast_channels = value.shape[1] - extra
            grown[:, :contrast_channels] = value[:, :contrast_channels]
            if extra:
                grown[:, -extra:] = value[:, -extra:]
            widened[key] = grown
        else:
            widened[key] = value
    network.load_state_dict(widened)
