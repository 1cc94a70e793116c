"""The VAE-UNet's typed configuration and presets.

Inputs: every contrast of the set but `target`, in the set's channel order; output: `target`.
The encoder is `depth` pix2pix down-blocks; its deepest features give a latent mean and
log-variance of `latent_channels` maps at S / 2**depth; a sample of the latent (its mean when not
training) is decoded by up-blocks with the encoder's skips. Loss: L1 + kl_weight * KL (training_step.py).
No torch import here.

>>> preset("vae-unet-tiny", 3).latent_channels, preset("vae-unet", 4).target
(8, 'FLAIR')
>>> VAEUNetConfig.from_dict(preset("vae-unet", 4).to_dict()) == preset("vae-unet", 4)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...core.errors import InputError
from ..config_fields import FlatConfig, check_image_size, check_name, check_widths, choice, number, preset_named, whole

OUTPUT_ACTIVATIONS = ("relu", "none", "tanh")


@dataclass
class VAEUNetConfig(FlatConfig):
    """Everything needed to rebuild the VAE-UNet, its target contrast and its KL weight."""

    family: ClassVar[str] = "vaeunet"

    name: str
    contrasts: int = 4
    image_size: int = 256
    target: str = "FLAIR"  # the contrast synthesized; the others are the inputs
    base_width: int = 64
    max_width: int = 512
    depth: int = 6  # encoder levels: the latent is (latent_channels, S / 2**depth, S / 2**depth)
    latent_channels: int = 128  # the latent size per position
    kl_weight: float = 1e-3
    dropout: float = 0.0  # in the decoder (uncertainty samples the latent either way)
    output_activation: str = "relu"

    def validate(self) -> None:
        name = self.name
        check_name(name)
        if not isinstance(self.target, str) or not self.target:
            raise InputError(f"model {name!r}: target {self.target!r} must name a contrast, e.g. \"FLAIR\".")
        choice(f"model {name!r}: output_activation", self.output_activation, OUTPUT_ACTIVATIONS)
        whole(f"model {name!r}: contrasts", self.contrasts, 2, 16)
        check_widths(name, self.base_width, self.max_width)
        whole(f"model {name!r}: depth", self.depth, 1, 12)
        whole(f"model {name!r}: latent_channels", self.latent_channels, 1, 4096)
        number(f"model {name!r}: kl_weight", self.kl_weight, 0.0, 1e3)
        number(f"model {name!r}: dropout", self.dropout, 0.0, 0.95)
        check_image_size(name, self.image_size, 2**self.depth)


PRESETS = {
    # 256 px: six levels to a 4x4x128 latent (FLAIR from T1, T1c, T2 in the seed document).
    "vae-unet": lambda n: VAEUNetConfig("vae-unet", n),
    # Seconds on a CPU: for tests (set its target with model_overrides, e.g. {"target": "PD"}).
    "vae-unet-tiny": lambda n: VAEUNetConfig("vae-unet-tiny", n, 32, base_width=8, max_width=32, depth=3,
                                             latent_channels=8),
}


def preset(name: str, contrasts: int) -> VAEUNetConfig:
    """A named configuration for `contrasts` channels."""
    return preset_named(PRESETS, name, contrasts)
