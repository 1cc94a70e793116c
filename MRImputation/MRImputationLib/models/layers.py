"""Layers every slice-wise family builds with: pix2pix down- and up-blocks, a PatchGAN stack, DCGAN init.

MM-GAN's U-Net (models/mmgan/networks.py, the authors' layers), the CycleGAN's generators and
discriminators (models/cyclegan/) and the VAE-UNet's encoder and decoder (models/vaeunet/) are
made of these, so a family is its own arrangement of them and never imports another family.

>>> import torch
>>> DownBlock(1, 8, normalize=True, dropout=0.0)(torch.zeros(1, 1, 16, 16)).shape
torch.Size([1, 8, 8, 8])
>>> patch_layers(2, (8, 16), 1)(torch.zeros(1, 2, 32, 32)).shape
torch.Size([1, 1, 8, 8])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DownBlock(nn.Sequential):
    """Conv 4x4 stride 2 (no bias) -> [instance norm] -> LeakyReLU 0.2 -> [dropout]."""

    def __init__(self, in_channels: int, out_channels: int, normalize: bool, dropout: float) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False)]
        if normalize:
            layers.append(nn.InstanceNorm2d(out_channels, affine=False))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        if dropout:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class UpBlock(nn.Module):
    """Transposed conv 4x4 stride 2 (no bias) -> [instance norm] -> ReLU -> [dropout], then the skip is appended."""

    def __init__(self, in_channels: int, out_channels: int, normalize: bool, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False)]
        if normalize:
            layers.append(nn.InstanceNorm2d(out_channels, affine=False))
        layers.append(nn.ReLU(inplace=True))
        if dropout:
            layers.append(nn.Dropout(dropout))
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        x = self.block(x)
        return x if skip is None else torch.cat((x, skip), dim=1)


def patch_layers(in_channels: int, widths: tuple[int, ...], out_channels: int) -> nn.Sequential:
    """A PatchGAN: 4x4 stride-2 convs with bias (instance norm from the second on) + LeakyReLU 0.2,
    then a 4x4 conv without bias to `out_channels` real/fake maps of size S / 2**len(widths); no
    sigmoid (least-squares GAN)."""
    layers: list[nn.Module] = []
    previous = in_channels
    for i, width in enumerate(widths):
        layers.append(nn.Conv2d(previous, width, 4, stride=2, padding=1))
        if i > 0:
            layers.append(nn.InstanceNorm2d(width, affine=False))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        previous = width
    layers += [nn.ZeroPad2d((1, 0, 1, 0)), nn.Conv2d(previous, out_channels, 4, padding=1, bias=False)]
    return nn.Sequential(*layers)


def init_weights(module: nn.Module) -> None:
    """Conv weights ~ N(0, 0.02); affine norm weights ~ N(1, 0.02) with zero bias (none by default)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, 0.02)
        elif isinstance(layer, (nn.InstanceNorm2d, nn.BatchNorm2d)) and layer.affine:
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)


def count_parameters(module: nn.Module) -> int:
    """The number of parameters (trainable or not)."""
    return sum(p.numel() for p in module.parameters())
