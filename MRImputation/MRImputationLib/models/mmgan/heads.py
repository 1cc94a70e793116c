"""The MM-GAN generator's output heads, one builder per `Head` option, chosen once by name.

A head is two modules the generator registers as `lift` and `head` (their names are the weights'
names in checkpoints and bundles):

* `lift(decoded, inputs)` prepares the last up-block's output: MM-GAN's head keeps it as it is;
  the full-resolution head upsamples it (4x4 transposed conv x2, ReLU) and appends the generator's
  own input.
* `head(x)` makes the N output channels (before the optional paths and the output activation):
  MM-GAN's is nearest upsample x2 -> zero-pad (left 1, top 1) -> 4x4 conv with bias; the
  full-resolution one is 3x3 conv -> ReLU -> 3x3 conv with bias.

>>> lift, head = build_head(Head.FULL_RESOLUTION, decoded_channels=16, input_channels=3, output_channels=3, width=8)
>>> head(lift(torch.zeros(1, 16, 4, 4), torch.zeros(1, 3, 8, 8))).shape
torch.Size([1, 3, 8, 8])
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .config import Head


class KeepDecoded(nn.Module):
    """MM-GAN's lift: the decoder's output as it is (no weights)."""

    def forward(self, decoded: Tensor, inputs: Tensor) -> Tensor:
        return decoded


class LiftToInput(nn.Sequential):
    """Upsample the decoder's output to the input's resolution, then append the generator's input."""

    def forward(self, decoded: Tensor, inputs: Tensor) -> Tensor:
        return torch.cat((super().forward(decoded), inputs), dim=1)


def _mmgan_head(decoded_channels: int, input_channels: int, output_channels: int, width: int):
    head = nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ZeroPad2d((1, 0, 1, 0)),
        nn.Conv2d(decoded_channels, output_channels, 4, padding=1),
    )
    return KeepDecoded(), head


def _full_resolution_head(decoded_channels: int, input_channels: int, output_channels: int, width: int):
    lift = LiftToInput(nn.ConvTranspose2d(decoded_channels, width, 4, stride=2, padding=1, bias=False),
                       nn.ReLU(inplace=True))
    head = nn.Sequential(
        nn.Conv2d(width + input_channels, width, 3, padding=1, bias=False),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, output_channels, 3, padding=1),
    )
    return lift, head


HEADS: dict[Head, Callable[..., tuple[nn.Module, nn.Sequential]]] = {
    Head.MMGAN: _mmgan_head,
    Head.FULL_RESOLUTION: _full_resolution_head,
}


def build_head(kind: Head, decoded_channels: int, input_channels: int, output_channels: int, width: int):
    """(lift, head) for `kind`: `decoded_channels` from the last up-block, `input_channels` of the
    generator's input, `output_channels` out, `width` the first down-block's width."""
    return HEADS[Head(kind)](decoded_channels, input_channels, output_channels, width)
