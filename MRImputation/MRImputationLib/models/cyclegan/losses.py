"""The CycleGAN's loss pieces that torch does not have: a differentiable SSIM and the image pool.

>>> import torch
>>> x = torch.rand(2, 1, 32, 32)
>>> round(float(ssim(x, x)), 4)
1.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean SSIM of (B, 1, H, W) images (Gaussian window 11, sigma 1.5, as scikit-image's gaussian_weights)."""
    window = _gaussian_window(device=x.device).to(x.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    sxx = F.conv2d(x * x, window) - mu_x**2
    syy = F.conv2d(y * y, window) - mu_y**2
    sxy = F.conv2d(x * y, window) - mu_x * mu_y
    value = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return value.mean()


class ImagePool:
    """The last `size` generated images: a discriminator is shown, for each new fake, either it or
    (half the time, once the pool is full) a stored one that it replaces. Draws from torch's global
    generator (the trainer's checkpoints keep its state); `state_dict` holds the images."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[Tensor] = []

    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image[None]
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand(())) < 0.5:
                k = int(torch.randint(len(self.images), ()))
                out.append(self.images[k].clone())
                self.images[k] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> Tensor:
        return torch.cat(self.images, 0).cpu() if self.images else torch.zeros(0)

    def load_state_dict(self, images: Tensor, device) -> None:
        self.images = [image[None].to(device) for image in images]
