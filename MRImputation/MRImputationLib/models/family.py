"""A model family behind one small protocol, and the registry of families by name.

The families: MM-GAN (models/mmgan/, every scenario), the unpaired CycleGAN (models/cyclegan/, two
contrasts both ways) and the VAE-UNet (models/vaeunet/, one declared target). The rest of the
library speaks to a family only through `ModelFamily` and the `TrainingStep` it makes: the trainer
(training/trainer.py) builds the family's networks, draws its batches as its `pairing` says
(training/sampling.py), runs its step and keeps its optimizers and step state in checkpoints; the
imputer (imputation/slice_imputer.py) runs `impute_batch`; loading (models/loading.py) builds the
network that imputes; training, validation, export, imputation and evaluation keep to the
`scenarios` it serves. Nothing outside a family's subpackage asks which family it is.

A new family is new files: a subpackage models/<name>/ whose `family.py` defines `FAMILY`, an
object with the methods of `ModelFamily`, and whose typed configuration names the family (class
attribute `family`; in JSON the key "family", which may be left out for MM-GAN, so every model.json
and bundle written before families existed still loads).

>>> family_named("mmgan").inference_network, family_named("cyclegan").pairing
('generator', 'unpaired')
>>> config = model_config_from_dict(family_named("mmgan").preset("tiny", 3).to_dict())
>>> family_of(config).name, config.contrasts
('mmgan', 3)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..core.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from ..core.contrasts import ContrastSet, Scenario

DEFAULT_FAMILY = "mmgan"


class FamilyConfig(Protocol):
    """What every family's typed configuration offers (MM-GAN's: models/mmgan/config.ModelConfig)."""

    family: ClassVar[str]
    name: str
    contrasts: int
    image_size: int

    def to_dict(self) -> dict[str, Any]: ...


@dataclass
class Networks:
    """A family's networks by name: as built (their state dicts are what checkpoints keep) and as
    trained (each wrapped for DistributedDataParallel under torchrun, else the same module)."""

    built: dict[str, "nn.Module"]
    trained: dict[str, "nn.Module"]


@dataclass(frozen=True)
class Execution:
    """How networks run: on which device type, under which autocast dtype (None: full precision),
    and whether inputs are laid out channels_last."""

    device_type: str = "cpu"
    autocast_dtype: Any = None  # a torch.dtype
    channels_last: bool = False

    def autocast(self):
        import torch

        return torch.autocast(self.device_type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

    def layout(self, x: "Tensor") -> "Tensor":
        import torch

        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class TrainingStep(Protocol):
    """A family's optimisation step, made once per training run by `ModelFamily.training_step`."""

    # By short name; the trainer gives each a learning-rate schedule, checkpoints them as
    # "opt_<name>" and "sched_<name>", and reports the first one's learning rate as the history's "lr".
    optimizers: dict[str, "torch.optim.Optimizer"]
    # (loss name, label) of the losses that progress lines show, e.g. (("loss_g", "G"), ("loss_d", "D")).
    headline: tuple[tuple[str, str], ...]

    def begin_run(self, dataset, contrasts) -> None:
        """Once, before a run's first step (never on --resume): e.g. fit what starts from the data."""

    def __call__(self, real: "Tensor", available: "Tensor", present: "Tensor | None" = None) -> dict[str, float]:
        """One step on a batch of (B, N, S, S) real slices whose (B, N) `available` mask marks the given
        contrasts; returns the losses by name (the history's and the curves' columns). `present` (B, N)
        marks the contrasts each row's subject has (None: all): an absent one is a channel of zeros that
        no loss may learn from. Under unpaired sampling (`ModelFamily.pairing`), `available` marks the one
        contrast each row may be seen in: the others are zeros and are not there to learn from."""

    def state_dict(self) -> dict:
        """What the step keeps besides networks and optimizers (e.g. an image pool), for exact resume."""

    def load_state_dict(self, state: dict) -> None:
        """Back from `state_dict()` on --resume."""


class ModelFamily(Protocol):
    """A kind of model: how to build, feed, train and run it."""

    name: str  # the registry's key, and models/<name>/
    inference_network: str  # the network imputation runs; its weights are what best.pt and bundles keep
    preset_names: tuple[str, ...]
    # How training draws slices (training/sampling.py): "paired", every contrast of a slice from the same
    # patient; "unpaired", each patient of the training split seen in one contrast only (CycleGAN).
    pairing: str

    def scenarios(self, config: FamilyConfig, contrasts: "ContrastSet") -> list["Scenario"]:
        """The scenarios the model serves (trained for, imputed, scored), easy to hard; InputError when
        the configuration does not fit `contrasts` (e.g. a target contrast the set lacks)."""

    def config_from_dict(self, data: dict[str, Any]) -> FamilyConfig:
        """The typed configuration from its JSON (InputError naming a bad field)."""

    def preset(self, name: str, contrasts: int) -> FamilyConfig:
        """A named configuration for `contrasts` channels."""

    def build_networks(self, config: FamilyConfig) -> dict[str, "nn.Module"]:
        """Every network training needs, initialised, by name (checkpoint keys); built in a fixed order."""

    def build_inference_network(self, config: FamilyConfig) -> "nn.Module":
        """The network named `inference_network`, initialised (weights are loaded into it)."""

    def generator_input(self, config: FamilyConfig, real: "Tensor", available: "Tensor") -> "Tensor":
        """What the network is given for real slices of which only the `available` contrasts are known."""

    def impute_batch(self, config: FamilyConfig, network: "nn.Module", real: "Tensor", available: "Tensor",
                     execution: Execution) -> "Tensor":
        """(B, N, S, S) slices (missing channels ignored) -> (B, N, S, S) with the missing contrasts synthesized
        and the given ones as given; the caller holds inference mode and sets the network's mode."""

    def training_step(self, config: FamilyConfig, settings, networks: Networks, execution: Execution) -> TrainingStep:
        """The step for one run; `settings` is the training configuration (learning rate, loss weights, ...)."""


class PresetFamily:
    """What every family built on a typed configuration class and a table of presets shares: reading the
    configuration and making a preset (a family sets `config_class` and `presets`)."""

    config_class: type
    presets: dict

    @property
    def preset_names(self) -> tuple[str, ...]:
        return tuple(self.presets)

    def config_from_dict(self, data: dict[str, Any]) -> FamilyConfig:
        return self.config_class.from_dict(data)

    def preset(self, name: str, contrasts: int) -> FamilyConfig:
        if name not in self.presets:
            raise InputError(f"model configuration {name!r} is not known; choose one of {', '.join(self.presets)}.")
        return self.presets[name](contrasts)


def served_scenarios(config: FamilyConfig, contrasts: "ContrastSet") -> list["Scenario"]:
    """The scenarios a model of `config` serves on `contrasts` (its family decides)."""
    return family_of(config).scenarios(config, contrasts)


def availability(scenario: "Scenario", batch: int, device) -> "Tensor":
    """(B, N) float mask, 1 where the scenario gives the contrast."""
    import torch

    return torch.tensor(scenario.mask, dtype=torch.float32, device=device).expand(batch, -1)


_registered: dict[str, ModelFamily] = {}


def known_families() -> list[str]:
    """Names of the registered families and of every models/<name>/family.py."""
    found = {path.parent.name for path in Path(__file__).parent.glob("*/family.py")}
    return sorted(found | set(_registered))


def register_family(family: ModelFamily) -> None:
    """Make `family` known by its name (the families under models/ are found without this)."""
    _registered[family.name] = family


def family_named(name: str) -> ModelFamily:
    """The family called `name` (InputError listing the known ones)."""
    if name not in _registered:
        if name not in known_families():
            raise InputError(f"model family {name!r} is not known; choose one of {', '.join(known_families())}.")
        register_family(importlib.import_module(f"{__package__}.{name}.family").FAMILY)
    return _registered[name]


def context_slices(config: FamilyConfig) -> int:
    """How many neighbouring slices on each side the family's network takes (2.5-D); 0 for a single slice."""
    return int(getattr(config, "context_slices", 0))


def family_of(config: FamilyConfig) -> ModelFamily:
    """The family a typed configuration belongs to."""
    return family_named(type(config).family)


def model_config_from_dict(data: dict[str, Any]) -> FamilyConfig:
    """A model configuration (model.json, a bundle's "model") as its family's typed configuration."""
    if not isinstance(data, dict):
        raise InputError(f"model configuration: expected a JSON object, got {type(data).__name__}.")
    return family_named(data.get("family", DEFAULT_FAMILY)).config_from_dict(data)


def model_preset(name: str, contrasts: int) -> FamilyConfig:
    """The named configuration of whichever family has a preset called `name`."""
    families = [family_named(f) for f in known_families()]
    for family in families:
        if name in family.preset_names:
            return family.preset(name, contrasts)
    known = ", ".join(n for family in families for n in family.preset_names)
    raise InputError(f"model configuration {name!r} is not known; choose one of {known}.")
