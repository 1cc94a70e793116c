"""Typed configurations of the MM-GAN networks, with named presets and a JSON round trip.

Only the architecture lives here (what a bundle must carry to rebuild the networks); training-loop
settings (learning rate, epochs, batch) belong to the trainer. No torch import: bundles can be
inspected without it.

Where the authors' code (trane293/mm-gan, `modules/advanced_gans/models.py`) and the written
summary in the design notes differ, the code wins (it is the specification):

* Dropout sits on the *five* deepest down-blocks (down4..down8, every 512-wide one) and the four
  first up-blocks; hence the separate `dropout_down_blocks` (5) and `dropout_blocks` (4).
* Instance norm is left out on the first down-block (as in pix2pix) *and* on the innermost one.

The variants are named options, chosen once by name: `Head`, `DiscriminatorCondition`,
`FakeTarget`, `Norm`, `OutputActivation` (string enums; JSON holds their values, as it always
did), plus the optional generator paths (`linear_path`, `voxel_path_width`). What each option
builds or computes lives in this subpackage only: heads.py, paths.py, conditioning.py,
training_step.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, ClassVar

from ...core.errors import InputError
from ..config_fields import check_keys


class Norm(StrEnum):
    """The generator's normalisation layer."""

    INSTANCE = "instance"  # instance norm without affine parameters (authors)
    NONE = "none"


class OutputActivation(StrEnum):
    """The generator's last activation."""

    RELU = "relu"  # authors: non-negative intensities
    NONE = "none"
    TANH = "tanh"  # for data in [-1, 1]


class Head(StrEnum):
    """The generator's output head (built in heads.py)."""

    MMGAN = "mmgan"  # authors: nearest x2 and a 4x4 conv on half-resolution features
    FULL_RESOLUTION = "full-resolution"  # this project's: refined at full resolution with the generator's input


class DiscriminatorCondition(StrEnum):
    """What the discriminator pairs the candidate with (built in conditioning.py)."""

    FULL = "full"  # authors: the complete real image
    IMPUTED = "imputed"  # the zero-imputed input and the availability mask as N constant channels

    @property
    def channels_per_contrast(self) -> int:
        return _CONDITION_CHANNELS[self]


_CONDITION_CHANNELS = {DiscriminatorCondition.FULL: 1, DiscriminatorCondition.IMPUTED: 2}


class FakeTarget(StrEnum):
    """The discriminator's target for the fake pair (made in training_step.py)."""

    PER_CHANNEL = "per_channel"  # authors: 1 on channels copied from the real input, 0 on synthesized ones
    ZEROS = "zeros"  # the public IXI adaptation


def _choice(kind: type[StrEnum], value: Any, what: str) -> StrEnum:
    """`value` (the enum member or its JSON string) as a member of `kind`, or an InputError naming the choices."""
    try:
        return kind(value)
    except ValueError:
        raise InputError(f"{what} {value!r}: choose one of {', '.join(kind)}.") from None


def _json_dict(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {key: value.value if isinstance(value, Enum) else value for key, value in items}


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


# Caps far above every preset (mmgan-faithful: widths to 512, depth 8, 256 px, 54 M generator parameters),
# checked before anything is allocated: a bundle's configuration is data from disk.
LIMITS = {"depth": (2, 12), "base_width": (1, 4096), "max_width": (1, 4096), "extra_input_channels": (0, 64), "context_slices": (0, 8),
          "voxel_path_width": (0, 4096), "dropout_blocks": (0, 11), "dropout_down_blocks": (0, 12),
          "contrasts": (2, 16), "image_size": (4, 2048), "discriminator width": (1, 4096)}
MAX_DISCRIMINATOR_BLOCKS = 8
MAX_PARAMETERS = 1_000_000_000  # about 4 GB of float32 weights per network


def _whole(what: str, value: Any, limit: str) -> None:
    """InputError unless `value` is a whole number (not a bool, not a float) within LIMITS[limit]."""
    low, high = LIMITS[limit]
    if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
        raise InputError(f"{what} {value!r}: must be a whole number from {low} to {high}.")


@dataclass
class GeneratorConfig:
    """The U-Net generator: `depth` down-blocks (widths doubling from `base_width`, capped at
    `max_width`), `depth - 1` up-blocks with skip connections, and an upsampling head.

    >>> GeneratorConfig().widths()
    [64, 128, 256, 512, 512, 512, 512, 512]
    """

    depth: int = 8
    base_width: int = 64
    max_width: int = 512
    dropout: float = 0.2
    dropout_blocks: int = 4  # the first N up-blocks (decoder side)
    dropout_down_blocks: int = 5  # the deepest N down-blocks (authors: down4..down8)
    norm: Norm = Norm.INSTANCE
    output_activation: OutputActivation = OutputActivation.RELU
    extra_input_channels: int = 0  # e.g. an availability mask (appended after the contrasts)
    # 2.5-D (this project's): the k axial slices on each side of the one synthesized, every contrast of
    # them with the missing ones zeroed, as extra input channels after the slice's own (zeros beyond the
    # slices fed to the network). 0: MM-GAN's single slice.
    context_slices: int = 0
    # Head.MMGAN: the authors' head (nearest x2, 4x4 conv), which builds every output pixel from
    # half-resolution features. Head.FULL_RESOLUTION (this project's): the upsampled decoder output is
    # concatenated with the generator's own input and refined by two 3x3 convs, so detail that the
    # given contrasts show at voxel scale reaches the output.
    head: Head = Head.MMGAN
    # This project's: add the linear baseline's voxel-wise map of the given contrasts (least squares
    # on the training slices, one per pattern of given contrasts, then fixed) before the output
    # activation, so the U-Net learns the residual (see paths.py).
    linear_path: bool = False
    # This project's: a learned voxel-wise MLP (this many hidden units; 0 = none) from the given
    # contrasts and the availability pattern, added before the output activation (see paths.py).
    voxel_path_width: int = 0

    def __post_init__(self) -> None:
        self._choose_options()

    def _choose_options(self) -> None:
        """Each named option from its member or JSON string (an InputError naming the choices otherwise)."""
        self.norm = _choice(Norm, self.norm, "generator norm")
        self.output_activation = _choice(OutputActivation, self.output_activation, "generator output_activation")
        self.head = _choice(Head, self.head, "generator head")

    def widths(self) -> list[int]:
        """Output channels of each down-block, shallowest first."""
        return [min(self.base_width * 2**i, self.max_width) for i in range(self.depth)]

    def validate(self) -> None:
        for name in ("depth", "base_width", "max_width", "dropout_blocks", "dropout_down_blocks",
                     "extra_input_channels", "voxel_path_width", "context_slices"):
            _whole(f"generator {name}", getattr(self, name), name)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise InputError(f"generator dropout {self.dropout!r}: must be a number in [0, 1).")
        if not isinstance(self.linear_path, bool):
            raise InputError(f"generator linear_path {self.linear_path!r}: must be true or false.")
        if self.depth < 2:
            raise InputError(f"generator depth {self.depth}: needs at least 2 down-blocks.")
        if self.base_width < 1 or self.max_width < self.base_width:
            raise InputError(
                f"generator widths base {self.base_width}, max {self.max_width}: need 1 <= base_width <= max_width."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"generator dropout {self.dropout}: must be in [0, 1).")
        if not 0 <= self.dropout_blocks <= self.depth - 1:
            raise InputError(f"generator dropout_blocks {self.dropout_blocks}: must be 0..{self.depth - 1} (up-blocks).")
        if not 0 <= self.dropout_down_blocks <= self.depth:
            raise InputError(f"generator dropout_down_blocks {self.dropout_down_blocks}: must be 0..{self.depth}.")
        self._choose_options()
        if self.voxel_path_width < 0:
            raise InputError(f"generator voxel_path_width {self.voxel_path_width}: must be >= 0 (0: no voxel path).")
        if self.extra_input_channels < 0:
            raise InputError(f"generator extra_input_channels {self.extra_input_channels}: must be >= 0.")


@dataclass
class DiscriminatorConfig:
    """The PatchGAN discriminator: one stride-2 block per width, then a 4x4 conv to one map per contrast.

    `condition` says what the candidate is paired with: FULL = the complete real image (the
    authors'), IMPUTED = the zero-imputed input plus the availability mask as N constant
    channels, which takes away the shortcut of comparing two identical halves.

    >>> DiscriminatorConfig().downsampling
    16
    >>> DiscriminatorConfig(condition="imputed").condition_channels(3)
    6
    """

    widths: tuple[int, ...] = (64, 128, 256, 512)
    condition: DiscriminatorCondition = DiscriminatorCondition.FULL

    def __post_init__(self) -> None:
        if not isinstance(self.widths, (list, tuple)):
            raise InputError(f"discriminator widths {self.widths!r}: must be a list of whole numbers, e.g. [64, 128].")
        self.widths = tuple(self.widths)
        self.condition = _choice(DiscriminatorCondition, self.condition, "discriminator condition")

    @property
    def downsampling(self) -> int:
        return 2 ** len(self.widths)

    def condition_channels(self, contrasts: int) -> int:
        """Channels of the condition paired with an N-channel candidate."""
        return self.condition.channels_per_contrast * contrasts

    def validate(self) -> None:
        if not self.widths or len(self.widths) > MAX_DISCRIMINATOR_BLOCKS:
            raise InputError(f"discriminator widths {self.widths}: need 1 to {MAX_DISCRIMINATOR_BLOCKS} widths.")
        for width in self.widths:
            _whole("discriminator width", width, "discriminator width")
        self.condition = _choice(DiscriminatorCondition, self.condition, "discriminator condition")


@dataclass
class ModelConfig:
    """Everything needed to rebuild the networks of one model; saved in every run and bundle.

    `fake_target` is the discriminator's target for the fake pair: PER_CHANNEL (authors: 1 for
    channels copied from the real input by implicit conditioning, 0 for synthesized ones) or
    ZEROS (the public IXI adaptation). In JSON every option is its string value, as before the
    options were typed, and the family ("mmgan") is left implicit (models/family.py).

    >>> config = preset("tiny", contrasts=3)
    >>> ModelConfig.from_dict(config.to_dict()) == config
    True
    >>> config.to_dict()["generator"]["head"], config.fake_target is FakeTarget.PER_CHANNEL
    ('mmgan', True)
    """

    family: ClassVar[str] = "mmgan"

    name: str
    contrasts: int = 3
    image_size: int = 256
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    fake_target: FakeTarget = FakeTarget.PER_CHANNEL

    def __post_init__(self) -> None:
        self.fake_target = _choice(FakeTarget, self.fake_target, f"model {self.name!r}: fake_target")
        self.validate()

    @property
    def input_channels(self) -> int:
        return self.contrasts * (1 + 2 * self.generator.context_slices) + self.generator.extra_input_channels

    @property
    def context_slices(self) -> int:
        return self.generator.context_slices

    def validate(self) -> None:
        if not isinstance(self.name, str):
            raise InputError(f"model configuration: name {self.name!r} must be a string.")
        if not isinstance(self.generator, GeneratorConfig) or not isinstance(self.discriminator, DiscriminatorConfig):
            raise InputError(f"model {self.name!r}: 'generator' and 'discriminator' must be JSON objects.")
        self.generator.validate()
        self.discriminator.validate()
        _whole(f"model {self.name!r}: contrasts", self.contrasts, "contrasts")
        _whole(f"model {self.name!r}: image_size", self.image_size, "image_size")
        self.fake_target = _choice(FakeTarget, self.fake_target, f"model {self.name!r}: fake_target")
        smallest = max(2**self.generator.depth, 2 * self.discriminator.downsampling)
        if not _is_power_of_two(self.image_size) or self.image_size < smallest:
            raise InputError(
                f"model {self.name!r}: image_size {self.image_size} must be a power of two >= {smallest} "
                f"(generator depth {self.generator.depth}, {len(self.discriminator.widths)} discriminator blocks)."
            )
        if self.approximate_parameters() > MAX_PARAMETERS:
            raise InputError(f"model {self.name!r}: its networks would have about {self.approximate_parameters():,} "
                             f"weights, more than the {MAX_PARAMETERS:,} this version builds; check the widths and depth.")

    def approximate_parameters(self) -> int:
        """The convolution weights of the generator and discriminator (4x4 kernels), from the widths alone."""
        widths, depth = self.generator.widths(), self.generator.depth
        total, previous = 0, self.input_channels
        for width in widths:
            total, previous = total + previous * width * 16, width
        for j in range(depth - 1):
            total, previous = total + previous * widths[depth - 2 - j] * 16, 2 * widths[depth - 2 - j]
        total += previous * (widths[0] + self.contrasts) * 16
        previous = self.contrasts + self.discriminator.condition_channels(self.contrasts)
        for width in self.discriminator.widths:
            total, previous = total + previous * width * 16, width
        return total

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self, dict_factory=_json_dict)
        data["discriminator"]["widths"] = list(self.discriminator.widths)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        if not isinstance(data, dict):
            raise InputError(f"model configuration: expected a JSON object, got {type(data).__name__}.")
        data = dict(data)
        family = data.pop("family", cls.family)
        if family != cls.family:
            raise InputError(f"model configuration: family {family!r} is not {cls.family!r}; read it with "
                             "models.family.model_config_from_dict.")
        check_keys("model configuration", data, cls)
        parts = {"generator": GeneratorConfig, "discriminator": DiscriminatorConfig}
        for key, part in parts.items():
            if key in data:
                if not isinstance(data[key], dict):
                    raise InputError(f"model configuration: {key!r} must be a JSON object.")
                check_keys(f"model configuration {key!r}", data[key], part)
                data[key] = part(**data[key])
        if "name" not in data:
            raise InputError("model configuration: 'name' is missing.")
        return cls(**data)


def _faithful(contrasts: int) -> ModelConfig:
    return ModelConfig("mmgan-faithful", contrasts, 256)


def _seed_ixi(contrasts: int) -> ModelConfig:
    # The IXI adaptation's default depth-6 U-Net: dropout on the 512-wide blocks (down4..6, up1..2).
    generator = GeneratorConfig(depth=6, dropout_blocks=2, dropout_down_blocks=3)
    return ModelConfig("seed-ixi", contrasts, 128, generator, DiscriminatorConfig(), fake_target=FakeTarget.ZEROS)


def _reduced(contrasts: int) -> ModelConfig:
    generator = GeneratorConfig(depth=6, base_width=32, max_width=256, dropout_blocks=2, dropout_down_blocks=3)
    return ModelConfig("mmgan-reduced", contrasts, 128, generator, DiscriminatorConfig(widths=(32, 64, 128, 256)))


def _tiny(contrasts: int) -> ModelConfig:
    generator = GeneratorConfig(depth=4, base_width=8, max_width=32, dropout_blocks=1, dropout_down_blocks=2)
    return ModelConfig("tiny", contrasts, 32, generator, DiscriminatorConfig(widths=(8, 16, 32, 64)))


PRESETS = {
    "mmgan-faithful": _faithful,  # the authors' networks at 256 px (~54.4 M generator parameters)
    "seed-ixi": _seed_ixi,  # the public IXI adaptation: 6-level U-Net at 128 px, fake target all zeros
    "mmgan-reduced": _reduced,  # same design, narrower and shallower: bounded-time CPU runs
    "tiny": _tiny,  # for tests
}


def preset(name: str, contrasts: int) -> ModelConfig:
    """A named configuration for `contrasts` channels.

    >>> preset("mmgan-faithful", 4).generator.depth
    8
    """
    if name not in PRESETS:
        raise InputError(f"model configuration {name!r} is not known; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name](contrasts)
