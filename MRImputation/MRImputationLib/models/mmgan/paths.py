"""This project's optional voxel-wise paths of the MM-GAN generator, added to the head's output
before the output activation (off in the presets; `GeneratorConfig.linear_path`, `voxel_path_width`).

* `AvailabilityLinearPath`: the linear baseline's voxel-wise affine map of the given contrasts (one
  per pattern of given contrasts), fitted on the training slices when a run starts
  (`start_from_linear_regression`) and then fixed, so the U-Net learns the residual.
* `AvailabilityVoxelPath`: a learned small MLP (1x1 convs) from each voxel's given contrasts and
  the availability pattern.

Both read which contrasts are given off the input itself (implicit conditioning feeds a missing
contrast as all zeros), so the generator's interface is unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def given_contrasts(inputs: Tensor, contrasts: int) -> Tensor:
    """Which contrasts each input gives, (batch, contrasts) bool: implicit conditioning feeds a
    missing contrast as all zeros, so this is read off the input itself."""
    return inputs[:, :contrasts].abs().amax(dim=(2, 3)) > 0


class AvailabilityLinearPath(nn.Module):
    """A fixed voxel-wise affine map from the given contrasts to every output channel, with its own
    coefficients for each pattern of given contrasts (2**N tables of N x (N + 1) numbers).

    Which contrasts are given is read off the input (implicit conditioning feeds a missing contrast
    as all zeros), so the generator's interface is unchanged. The coefficients are buffers, not
    parameters: training sets them once to the least-squares fit on the training slices (the
    linear baseline, `set_map`) and the U-Net learns what remains. All zero until then, which makes
    the generator the plain U-Net.

    >>> path = AvailabilityLinearPath(3)
    >>> path(torch.ones(2, 3, 8, 8)).abs().max().item()
    0.0
    """

    def __init__(self, contrasts: int) -> None:
        super().__init__()
        self.contrasts = contrasts
        self.register_buffer("weight", torch.zeros(2**contrasts, contrasts, contrasts))
        self.register_buffer("bias", torch.zeros(2**contrasts, contrasts))
        self.register_buffer("place_values", 2 ** torch.arange(contrasts), persistent=False)

    @torch.no_grad()
    def set_map(self, available, target: int, intercept: float, weights) -> None:
        """Contrast `target` = intercept + sum of weights x given contrasts, when exactly the contrasts
        flagged in `available` (one bool per contrast, in order) are given."""
        given = [i for i, a in enumerate(available) if a]
        if len(weights) != len(given):
            raise ValueError(f"{len(weights)} weights for {len(given)} given contrasts")
        pattern = sum(2**i for i in given)
        self.weight[pattern, target] = 0.0
        self.weight[pattern, target, given] = torch.as_tensor(weights, dtype=self.weight.dtype)
        self.bias[pattern, target] = float(intercept)

    def forward(self, inputs: Tensor) -> Tensor:
        given = inputs[:, : self.contrasts]
        pattern = (given_contrasts(inputs, self.contrasts).long() * self.place_values).sum(dim=1)
        mapped = torch.einsum("boi,bihw->bohw", self.weight[pattern].to(given.dtype), given)
        return mapped + self.bias[pattern].to(given.dtype)[:, :, None, None]


def start_from_linear_regression(path: AvailabilityLinearPath, dataset, contrasts) -> None:
    """Set the linear path to the voxel-wise least-squares fit (the linear baseline) on the training
    slices (`dataset.subject_stacks()`), every scenario, so training starts from the baseline and
    learns the rest. Deterministic (no random draws), so every DDP rank computes the same; done
    once, when a run starts (the training step's `begin_run`), never again on --resume."""
    from ...core.contrasts import Scenario
    from ..linear import LinearImputer

    fitted = LinearImputer(contrasts).fit(dataset.subject_stacks())
    for bits, solved in fitted.coefficients.items():
        for target, (intercept, weights) in solved.items():
            path.set_map(Scenario(bits).mask, target, intercept, weights)


class AvailabilityVoxelPath(nn.Module):
    """A learned voxel-wise map: a small MLP (1x1 convs, `width` hidden units, two hidden layers) from
    each voxel's given contrasts and the availability pattern to every output channel.

    The authors' U-Net sees its input only through stride-2 convolutions and builds each output
    pixel from half-resolution features, so a non-linear intensity mapping that is exact at voxel
    scale (T2 from T1 and PD at the same voxel) is hard for it to express; this path expresses it
    directly, and the U-Net adds spatial context. Its last layer starts at zero (`build_generator`),
    so it begins as no change and is trained with the rest of the generator.

    >>> path = AvailabilityVoxelPath(3, 16)
    >>> path(torch.ones(2, 3, 8, 8)).shape
    torch.Size([2, 3, 8, 8])
    """

    def __init__(self, contrasts: int, width: int) -> None:
        super().__init__()
        self.contrasts = contrasts
        self.mlp = nn.Sequential(
            nn.Conv2d(2 * contrasts, width, 1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 1), nn.ReLU(inplace=True),
            nn.Conv2d(width, contrasts, 1),
        )

    def reset_parameters(self) -> None:
        """PyTorch's default initialisation for the hidden layers (not MM-GAN's N(0, 0.02): this path is
        not the authors', and the default is what it was measured with), zero for the output layer."""
        for layer in self.mlp:
            if isinstance(layer, nn.Conv2d):
                layer.reset_parameters()
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, inputs: Tensor) -> Tensor:
        given = inputs[:, : self.contrasts]
        available = given_contrasts(inputs, self.contrasts).to(given.dtype)[:, :, None, None].expand_as(given)
        return self.mlp(torch.cat((given, available), dim=1))
