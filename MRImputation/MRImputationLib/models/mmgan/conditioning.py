"""MM-GAN's implicit conditioning: what the generator and the discriminator are given.

* `generator_input`: the real contrasts with the missing ones set to zero (`zero_missing`), plus
  the availability mask as extra channels when the configuration asks for them.
* `implicit_conditioning`: the generator's output with its available channels replaced by the
  real inputs, in training and in imputation alike.
* `discriminator_condition`: what the candidate is paired with, one builder per
  `DiscriminatorCondition` option.

`available` is (B, N) or (N,), bool or 0/1, in channel order (1 = given).

>>> from MRImputationLib.models.mmgan.config import preset
>>> real = torch.ones(1, 3, 2, 2)
>>> generator_input(real, torch.tensor([[1.0, 0.0, 1.0]]), preset("tiny", 3))[0, :, 0, 0].tolist()
[1.0, 0.0, 1.0]
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .config import DiscriminatorCondition, ModelConfig


def _availability(available: Tensor, like: Tensor) -> Tensor:
    """(B, N) or (N,) availability as a (B|1, N, 1, 1) boolean mask on `like`'s device."""
    mask = torch.as_tensor(available, device=like.device).to(torch.bool)
    if mask.dim() == 1:
        mask = mask.unsqueeze(0)
    return mask[:, :, None, None]


def implicit_conditioning(output: Tensor, real: Tensor, available: Tensor) -> Tensor:
    """The generator's output with its available channels replaced by the real inputs.

    Gradients reach the output only through the missing (synthesized) channels.
    """
    return torch.where(_availability(available, output), real, output)


def zero_missing(real: Tensor, available: Tensor) -> Tensor:
    """The generator's input: missing channels set to zero, available ones kept. With 2.5-D context
    (`real` holds groups of N channels: the slice, then its neighbours) every group is masked alike."""
    mask = _availability(available, real)
    if real.shape[1] != mask.shape[1]:
        mask = mask.repeat(1, real.shape[1] // mask.shape[1], 1, 1)
    return torch.where(mask, real, torch.zeros((), dtype=real.dtype, device=real.device))


def generator_input(real: Tensor, available: Tensor, config: ModelConfig) -> Tensor:
    """Zero the missing contrasts; append the availability mask as channels when the config asks for it.

    `available` is (B, N) here (one row per slice). `real` is (B, N, h, w), or (B, N·(1 + 2k), h, w)
    with the slice's k neighbours on each side after it (`context_slices`)."""
    x = zero_missing(real, available)
    if config.generator.extra_input_channels:
        mask = available[:, :, None, None].to(real.dtype).expand_as(real[:, : available.shape[1]])
        x = torch.cat([x, mask[:, : config.generator.extra_input_channels]], dim=1)
    return x


def _full_image(real: Tensor, available: Tensor) -> Tensor:
    return real


def _imputed_with_mask(real: Tensor, available: Tensor) -> Tensor:
    mask = _availability(available, real).to(real.dtype).expand_as(real)
    return torch.cat((zero_missing(real, available), mask), dim=1)


CONDITIONS: dict[DiscriminatorCondition, Callable[[Tensor, Tensor], Tensor]] = {
    DiscriminatorCondition.FULL: _full_image,
    DiscriminatorCondition.IMPUTED: _imputed_with_mask,
}


def discriminator_condition(config: ModelConfig, real: Tensor, available: Tensor) -> Tensor:
    """What the discriminator pairs the candidate with under `config.discriminator.condition`.

    FULL: the complete real image (authors). IMPUTED: the zero-imputed input followed by the
    availability mask broadcast to N constant channels (1 = available); `condition_channels` of
    the discriminator's configuration says how many channels each gives.
    """
    return CONDITIONS[config.discriminator.condition](real, available)
