"""The CycleGAN's networks: one-contrast generators (U-Net or ResNet) and PatchGAN discriminators,
each direction's pair held in one module so a training step is one forward pass (DDP needs that).

>>> from .config import preset
>>> generators = build_generators(preset("cyclegan-tiny", 2)).eval()
>>> out = generators(torch.zeros(2, 1, 32, 32), torch.zeros(3, 1, 32, 32))
>>> out["fake_b"].shape, out["rec_b"].shape
(torch.Size([2, 1, 32, 32]), torch.Size([3, 1, 32, 32]))
"""

from __future__ import annotations

import torch  # noqa: F401 (the doctests use it)
from torch import Tensor, nn

from ..layers import DownBlock, UpBlock, init_weights, patch_layers
from .config import CycleGANConfig

ACTIVATIONS = {"relu": nn.ReLU, "none": nn.Identity, "tanh": nn.Tanh}


class UNet(nn.Module):
    """pix2pix's U-Net, one contrast in and one out: `depth` down-blocks (no norm on the first and
    the innermost), up-blocks with skips (dropout on the first `dropout_blocks`), a last transposed conv."""

    def __init__(self, config: CycleGANConfig) -> None:
        super().__init__()
        depth = config.depth
        widths = [min(config.base_width * 2**i, config.max_width) for i in range(depth)]
        self.down = nn.ModuleList()
        previous = 1
        for i, width in enumerate(widths):
            self.down.append(DownBlock(previous, width, 0 < i < depth - 1, 0.0))
            previous = width
        self.up = nn.ModuleList()
        for j in range(depth - 1):
            width = widths[depth - 2 - j]
            self.up.append(UpBlock(previous, width, True, config.dropout if j < config.dropout_blocks else 0.0))
            previous = 2 * width
        self.last = nn.Sequential(nn.ConvTranspose2d(previous, 1, 4, stride=2, padding=1),
                                  ACTIVATIONS[config.output_activation]())

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, skips[-2::-1]):
            x = block(x, skip)
        return self.last(x)


class ResidualBlock(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), nn.InstanceNorm2d(width), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), nn.InstanceNorm2d(width)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


def resnet_generator(config: CycleGANConfig) -> nn.Sequential:
    """The CycleGAN paper's generator (c7s1-w, d2w, d4w, R4w x n, u2w, uw, c7s1-1), one contrast in and out."""
    w = config.base_width
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(1, w, 7), nn.InstanceNorm2d(w), nn.ReLU(True)]
    for k in (1, 2):
        layers += [nn.Conv2d(w * k, w * 2 * k, 3, stride=2, padding=1), nn.InstanceNorm2d(w * 2 * k), nn.ReLU(True)]
    layers += [ResidualBlock(4 * w, config.dropout) for _ in range(config.resnet_blocks)]
    for k in (4, 2):
        layers += [nn.ConvTranspose2d(w * k, w * k // 2, 3, stride=2, padding=1, output_padding=1),
                   nn.InstanceNorm2d(w * k // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, 1, 7), ACTIVATIONS[config.output_activation]()]
    return nn.Sequential(*layers)


GENERATORS = {"unet": UNet, "resnet": resnet_generator}


class CycleGenerators(nn.Module):
    """G_AB and G_BA. `forward(real_a, real_b)` gives every image the losses need; `translate` imputes."""

    def __init__(self, config: CycleGANConfig) -> None:
        super().__init__()
        self.a_to_b = GENERATORS[config.generator](config)
        self.b_to_a = GENERATORS[config.generator](config)

    def forward(self, real_a: Tensor, real_b: Tensor) -> dict[str, Tensor]:
        fake_b, fake_a = self.a_to_b(real_a), self.b_to_a(real_b)
        return {"fake_b": fake_b, "fake_a": fake_a, "rec_a": self.b_to_a(fake_b), "rec_b": self.a_to_b(fake_a),
                "idt_a": self.b_to_a(real_a), "idt_b": self.a_to_b(real_b)}

    def translate(self, x: Tensor, to_b: bool) -> Tensor:
        """A -> B when `to_b`, else B -> A; (B, 1, S, S) in and out."""
        return (self.a_to_b if to_b else self.b_to_a)(x)


class CycleDiscriminators(nn.Module):
    """D_A (real A against B -> A fakes) and D_B; `forward(images_a, images_b)` scores both."""

    def __init__(self, config: CycleGANConfig) -> None:
        super().__init__()
        self.a = patch_layers(1, config.discriminator_widths, 1)
        self.b = patch_layers(1, config.discriminator_widths, 1)

    def forward(self, images_a: Tensor, images_b: Tensor) -> tuple[Tensor, Tensor]:
        return self.a(images_a), self.b(images_b)


def build_generators(config: CycleGANConfig) -> CycleGenerators:
    config.validate()
    generators = CycleGenerators(config)
    init_weights(generators)
    return generators


def build_discriminators(config: CycleGANConfig) -> CycleDiscriminators:
    config.validate()
    discriminators = CycleDiscriminators(config)
    init_weights(discriminators)
    return discriminators
