"""The VAE-UNet: a pix2pix encoder to a latent mean and log-variance, a U-Net decoder with skips.

>>> from .config import preset
>>> network = build_vae_unet(preset("vae-unet-tiny", 3)).eval()
>>> out, mu, logvar = network(torch.zeros(2, 2, 32, 32))
>>> out.shape, mu.shape
(torch.Size([2, 1, 32, 32]), torch.Size([2, 8, 4, 4]))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import DownBlock, UpBlock, init_weights
from .config import VAEUNetConfig

ACTIVATIONS = {"relu": nn.ReLU, "none": nn.Identity, "tanh": nn.Tanh}


class VAEUNet(nn.Module):
    """(B, N-1, S, S) given contrasts -> (target (B, 1, S, S), latent mean, latent log-variance).

    In training mode (and for uncertainty, which runs it so) the latent is sampled
    (mean + exp(logvar / 2) * noise); in eval mode it is the mean."""

    def __init__(self, config: VAEUNetConfig) -> None:
        super().__init__()
        depth = config.depth
        widths = [min(config.base_width * 2**i, config.max_width) for i in range(depth)]
        self.encoder = nn.ModuleList()
        previous = config.contrasts - 1
        for i, width in enumerate(widths):
            self.encoder.append(DownBlock(previous, width, i > 0, 0.0))
            previous = width
        self.mean = nn.Conv2d(previous, config.latent_channels, 1)
        self.log_variance = nn.Conv2d(previous, config.latent_channels, 1)
        self.from_latent = nn.Sequential(nn.Conv2d(config.latent_channels, previous, 1), nn.LeakyReLU(0.2, True))
        self.decoder = nn.ModuleList()
        for j in range(depth - 1):
            width = widths[depth - 2 - j]
            self.decoder.append(UpBlock(previous, width, True, config.dropout))
            previous = 2 * width
        self.last = nn.Sequential(nn.ConvTranspose2d(previous, 1, 4, stride=2, padding=1),
                                  ACTIVATIONS[config.output_activation]())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        mu, logvar = self.mean(x), self.log_variance(x).clamp(-20.0, 20.0)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        x = self.from_latent(z)
        for block, skip in zip(self.decoder, skips[-2::-1]):
            x = block(x, skip)
        return self.last(x), mu, logvar


def build_vae_unet(config: VAEUNetConfig) -> VAEUNet:
    config.validate()
    network = VAEUNet(config)
    init_weights(network)
    return network
