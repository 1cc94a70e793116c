"""The CycleGAN's typed configuration and presets: architecture and its losses' weights.

Two contrasts, A and B, in the contrast set's channel order (T1, FLAIR: A = T1). Two generators
(A -> B and B -> A), each a pix2pix U-Net ("unet", as in the U-Net-generator CycleGAN for T1 <->
T2) or the CycleGAN paper's ResNet generator ("resnet": 7x7 conv, two stride-2 convs, residual
blocks, two transposed convs, 7x7 conv); two PatchGAN discriminators. Losses (training_step.py):
least-squares adversarial, cycle consistency (lambda_cycle), identity (lambda_identity, a fraction
of lambda_cycle as in the paper's code), and optionally SSIM on the cycle reconstructions
(lambda_ssim, the MRI <-> CT document's extra loss). No torch import here.

>>> preset("cyclegan-tiny", 2).generator, preset("cyclegan-unet", 2).depth
('unet', 8)
>>> CycleGANConfig.from_dict(preset("cyclegan-resnet", 2).to_dict()) == preset("cyclegan-resnet", 2)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...core.errors import InputError
from ..config_fields import FlatConfig, check_image_size, check_name, check_widths, choice, number, preset_named, whole, widths

GENERATORS = ("unet", "resnet")
OUTPUT_ACTIVATIONS = ("relu", "none", "tanh")


@dataclass
class CycleGANConfig(FlatConfig):
    """Everything needed to rebuild the CycleGAN's networks, and the weights of its losses."""

    family: ClassVar[str] = "cyclegan"

    name: str
    contrasts: int = 2
    image_size: int = 256
    generator: str = "unet"  # "unet" | "resnet"
    base_width: int = 64
    max_width: int = 512  # unet only
    depth: int = 8  # unet: levels (the 1x1 bottleneck at 256 px when 8)
    resnet_blocks: int = 9  # resnet only (9 at 256 px in the paper)
    dropout: float = 0.5  # in the first up-blocks of the U-Net (pix2pix), and what MC-dropout uncertainty uses
    dropout_blocks: int = 3
    output_activation: str = "relu"  # normalized intensities are >= 0
    discriminator_widths: tuple[int, ...] = (64, 128, 256, 512)
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  # x lambda_cycle
    lambda_ssim: float = 0.0  # 0: off; the MRI <-> CT document adds SSIM on the cycle reconstructions
    pool_size: int = 50  # past fakes the discriminators also see (Shrivastava et al.); 0: none

    def validate(self) -> None:
        name = self.name
        check_name(name)
        if self.contrasts != 2:
            raise InputError(f"model {name!r}: a CycleGAN translates between exactly two contrasts, not "
                             f"{self.contrasts}; choose two with --contrasts, e.g. --contrasts T1,FLAIR.")
        choice(f"model {name!r}: generator", self.generator, GENERATORS)
        choice(f"model {name!r}: output_activation", self.output_activation, OUTPUT_ACTIVATIONS)
        check_widths(name, self.base_width, self.max_width)
        whole(f"model {name!r}: depth", self.depth, 2, 12)
        whole(f"model {name!r}: resnet_blocks", self.resnet_blocks, 0, 64)
        whole(f"model {name!r}: dropout_blocks", self.dropout_blocks, 0, 11)
        whole(f"model {name!r}: pool_size", self.pool_size, 0, 1000)
        number(f"model {name!r}: dropout", self.dropout, 0.0, 0.95)
        for field in ("lambda_cycle", "lambda_identity", "lambda_ssim"):
            number(f"model {name!r}: {field}", getattr(self, field), 0.0, 1e4)
        self.discriminator_widths = widths(f"model {name!r}: discriminator_widths", self.discriminator_widths)
        smallest = 2 ** (len(self.discriminator_widths) + 1)
        smallest = max(smallest, 2**self.depth if self.generator == "unet" else 4)
        check_image_size(name, self.image_size, smallest)



def _check_two(contrasts: int) -> int:
    if contrasts != 2:
        raise InputError(f"a CycleGAN translates between exactly two contrasts, and this run has {contrasts}; "
                         "choose two with --contrasts, e.g. --contrasts T1,FLAIR.")
    return contrasts


PRESETS = {
    # The U-Net-generator CycleGAN at 256 px: pix2pix's unet_256 generators, 70x70 PatchGANs.
    "cyclegan-unet": lambda n: CycleGANConfig("cyclegan-unet", _check_two(n)),
    # The CycleGAN paper's generator: 9 residual blocks at 256 px.
    "cyclegan-resnet": lambda n: CycleGANConfig("cyclegan-resnet", _check_two(n), generator="resnet", dropout=0.0),
    # Seconds on a CPU: for tests.
    "cyclegan-tiny": lambda n: CycleGANConfig("cyclegan-tiny", _check_two(n), 32, base_width=8, max_width=32,
                                              depth=4, dropout_blocks=1, discriminator_widths=(8, 16), pool_size=8),
}


def preset(name: str, contrasts: int) -> CycleGANConfig:
    """A named configuration for two contrasts."""
    return preset_named(PRESETS, name, contrasts)
