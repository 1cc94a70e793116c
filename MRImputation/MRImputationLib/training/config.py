"""Training configurations: typed, saved as JSON next to every run and inside every bundle."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ..core.errors import InputError
from ..core.options import read_json_file


@dataclass
class TrainConfig:
    """How to train; `model` names a network preset of network_config (or is a full ModelConfig dict)."""

    model: str = "mmgan-faithful"
    model_overrides: dict = field(default_factory=dict)  # e.g. {"image_size": 128}
    # The model's contrast set, e.g. ["T1", "T1c", "T2", "FLAIR"] (--contrasts overrides it); None: every
    # contrast some subject has. Never shrunk to what all subjects share: subjects lacking one still train.
    contrasts: list[str] | None = None
    epochs: int = 60
    batch_size: int = 4
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lr_halve_every: int | None = None  # epochs; None = constant LR as in MM-GAN
    lr_linear_decay_after: int | None = None  # epochs at full LR, then linear decay to 0 (CycleGAN); None = off
    lambda_adversarial: float = 0.1
    lambda_l1: float = 0.9  # the pixel loss's weight (L1 in MM-GAN)
    pixel_loss: str = "l1"  # "l1" (MM-GAN) or "mse" (the squared error: what PSNR scores)
    curriculum: str = "mmgan"
    seed: int = 0
    crop: str = "full"  # slices: the whole plane ("full", as MM-GAN) or the brain's box ("brain")
    skip_empty: bool = False  # MM-GAN feeds every slice, empty ones too
    augment_flip: bool = False
    # "auto": bf16 autocast on CUDA and on a CPU with native bf16 (core/device.py), else fp32; "off"; "bf16"
    mixed_precision: str = "auto"
    channels_last: bool = True  # CUDA only: on a CPU it measured no faster (README, "Precision and threads")
    threads: int | None = None  # CPU threads of the training process; None = the cores not already busy
    steps_per_epoch: int | None = None  # cap per epoch (bounded-time runs); None = every slice once
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints; 0 = at epoch ends only
    validate_every: int = 1  # epochs
    num_workers: int = 0
    stop_after_steps: int | None = None  # stop (with a checkpoint) after this many steps in this call
    # A run folder whose networks start this run (fine-tuning): its best generator and its last checkpoint's
    # other networks; same network configuration and contrasts. None: fresh initialisation.
    init_from: str | None = None

    def __post_init__(self) -> None:
        check_settings(self)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"training configuration: unknown setting(s) {', '.join(sorted(unknown))}.")
        data = dict(data)
        if isinstance(data.get("betas"), list):
            data["betas"] = tuple(data["betas"])
        return cls(**data)

    def save(self, path: str | Path) -> None:
        from ..core.atomic import write_text

        write_text(path, json.dumps(self.to_dict(), indent=2))


# Whole-number settings and their least value; None is allowed where the default is None.
_WHOLE = {"epochs": 1, "batch_size": 1, "lr_halve_every": 1, "lr_linear_decay_after": 0, "seed": 0, "threads": 1, "steps_per_epoch": 1,
          "checkpoint_every": 0, "validate_every": 1, "num_workers": 0, "stop_after_steps": 1}
_OPTIONAL = {"lr_halve_every", "lr_linear_decay_after", "threads", "steps_per_epoch", "stop_after_steps"}
PIXEL_LOSSES = ("l1", "mse")
_TEXT = {"model": str, "curriculum": str, "crop": str, "mixed_precision": str, "model_overrides": dict, "pixel_loss": str,
         "skip_empty": bool, "augment_flip": bool, "channels_last": bool}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_settings(config: TrainConfig) -> None:
    """InputError naming the first setting whose type or range a run cannot use (-1 epochs, a NaN learning rate)."""
    for name, least in _WHOLE.items():
        value = getattr(config, name)
        if value is None and name in _OPTIONAL:
            continue
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
            raise InputError(f"training setting {name} = {value!r}: give a whole number of at least {least}"
                             + (" (or null)." if name in _OPTIONAL else "."))
    if not (_number(config.lr) and config.lr > 0):
        raise InputError(f"training setting lr = {config.lr!r}: give a finite learning rate above 0, e.g. 0.0002.")
    for name in ("lambda_adversarial", "lambda_l1"):
        if not (_number(getattr(config, name)) and getattr(config, name) >= 0):
            raise InputError(f"training setting {name} = {getattr(config, name)!r}: give a finite weight of at least 0.")
    betas = config.betas
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(_number(b) and 0 <= b < 1 for b in betas)):
        raise InputError(f"training setting betas = {betas!r}: give two numbers in [0, 1), e.g. [0.5, 0.999].")
    names = config.contrasts
    if names is not None and not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) and n
                                                                                      for n in names)):
        raise InputError(f"training setting contrasts = {names!r}: give a list of two or more contrast names, e.g. "
                         '["T1", "T2", "PD"] (or null for every contrast the data has).')
    for name, kind in _TEXT.items():
        if not isinstance(getattr(config, name), kind):
            raise InputError(f"training setting {name} = {getattr(config, name)!r}: must be a {kind.__name__}.")
    if config.pixel_loss not in PIXEL_LOSSES:
        raise InputError(f"training setting pixel_loss = {config.pixel_loss!r}: use one of {', '.join(PIXEL_LOSSES)}.")
    if config.init_from is not None and not (isinstance(config.init_from, str) and config.init_from):
        raise InputError(f"training setting init_from = {config.init_from!r}: give a run folder's path (or null).")


TRAIN_PRESETS: dict[str, TrainConfig] = {
    # MMGAN.md exactly: 256 px, every slice, constant LR, MM-GAN curriculum, batch 4, 60 epochs.
    "mmgan-faithful": TrainConfig(model="mmgan-faithful"),
    # The public IXI adaptation: 6-level U-Net, LR halved every 20 epochs, two-stage curriculum, flips.
    "seed-ixi": TrainConfig(model="seed-ixi", lr_halve_every=20, curriculum="two-stage", augment_flip=True,
                            crop="brain"),
    # Seconds on a CPU: for tests and the demo. fp32 everywhere, so results do not depend on the CPU's bf16.
    "tiny": TrainConfig(model="tiny", epochs=6, batch_size=8, lr=1e-3, curriculum="none", crop="brain",
                        skip_empty=True, mixed_precision="off"),
    # The CycleGAN paper: batch 1, Adam 2e-4 (0.5, 0.999), 100 epochs constant then 100 decaying linearly.
    # Unpaired: each training patient is seen in one of the two contrasts (training/sampling.py).
    "cyclegan-unet": TrainConfig(model="cyclegan-unet", epochs=200, batch_size=1, lr_linear_decay_after=100,
                                 curriculum="none"),
    "cyclegan-resnet": TrainConfig(model="cyclegan-resnet", epochs=200, batch_size=1, lr_linear_decay_after=100,
                                   curriculum="none"),
    "cyclegan-tiny": TrainConfig(model="cyclegan-tiny", epochs=6, batch_size=4, lr=1e-3, lr_linear_decay_after=3,
                                 curriculum="none", crop="brain", skip_empty=True, mixed_precision="off"),
    # The VAE-UNet: Adam 1e-4, batch 8; its target and KL weight are in its model configuration.
    "vae-unet": TrainConfig(model="vae-unet", epochs=60, batch_size=8, lr=1e-4, betas=(0.9, 0.999), curriculum="none"),
    "vae-unet-tiny": TrainConfig(model="vae-unet-tiny", epochs=6, batch_size=8, lr=1e-3, betas=(0.9, 0.999),
                                 curriculum="none", crop="brain", skip_empty=True, mixed_precision="off"),
}


def train_preset(name: str, **overrides) -> TrainConfig:
    """A named preset (or a JSON file of settings), with command-line overrides applied."""
    if name.endswith(".json"):
        path = Path(name)
        if not path.exists():
            raise InputError(f"{path}: configuration file not found.")
        data = read_json_file(path, "training configuration")
        if not isinstance(data, dict):
            raise InputError(f"{path}: a training configuration is a JSON object of settings, e.g. {{\"epochs\": 10}}.")
        try:
            config = TrainConfig.from_dict(data)
        except InputError as error:
            raise InputError(f"{path}: {error}") from None
    elif name in TRAIN_PRESETS:
        config = TRAIN_PRESETS[name]
    else:
        raise InputError(f"configuration {name!r} is unknown; use one of {', '.join(TRAIN_PRESETS)} or a .json file.")
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
