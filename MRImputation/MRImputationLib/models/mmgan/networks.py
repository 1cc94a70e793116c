"""The MM-GAN networks: a pix2pix-style U-Net generator and a per-contrast PatchGAN discriminator.

Built from a `ModelConfig` (config.py); the "mmgan-faithful" preset reproduces the
authors' `GeneratorUNet` and `Discriminator` (trane293/mm-gan) layer for layer:

* down-block: 4x4 conv, stride 2, no bias -> instance norm (no affine; left out on the first and
  the innermost block) -> LeakyReLU 0.2 -> dropout (deepest `dropout_down_blocks`)
* up-block: 4x4 transposed conv, stride 2, no bias -> instance norm -> ReLU -> dropout (first
  `dropout_blocks`) -> concatenation with the matching down-block's output
* head: nearest upsample x2 -> zero-pad (left 1, top 1) -> 4x4 conv with bias -> ReLU
  (this project's `Head.FULL_RESOLUTION` instead: 4x4 transposed conv x2 -> ReLU -> concatenation
  with the generator's input -> 3x3 conv -> ReLU -> 3x3 conv with bias -> output activation;
  heads.py)
* optional (this project's, off in the presets; paths.py): the availability-conditioned linear
  path and the learned voxel-wise path, added to the head's output before the output activation
* discriminator: 4x4 stride-2 convs with bias (no norm on the first) + LeakyReLU 0.2, zero-pad,
  4x4 conv without bias to one real/fake map per contrast, no sigmoid (least-squares GAN)
* conv weights ~ N(0, 0.02); biases keep PyTorch's default initialisation, as in the authors' code.

Forward passes contain no shape-dependent Python, so the modules trace and `torch.compile`, and
run in `channels_last` memory format. The generator works on any size divisible by 2**depth.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import DownBlock, UpBlock, init_weights, patch_layers
from .config import DiscriminatorConfig, GeneratorConfig, ModelConfig, Norm, OutputActivation
from .heads import build_head
from .paths import AvailabilityLinearPath, AvailabilityVoxelPath

OUTPUT_ACTIVATIONS = {OutputActivation.RELU: nn.ReLU, OutputActivation.TANH: nn.Tanh,
                      OutputActivation.NONE: nn.Identity}


class UNetGenerator(nn.Module):
    """All N contrasts in (missing ones zero, plus any extra channels), all N contrasts out.

    >>> from MRImputationLib.models.mmgan.config import preset
    >>> generator = build_generator(preset("tiny", 3)).eval()
    >>> generator(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 3, 32, 32])
    """

    def __init__(self, in_channels: int, out_channels: int, config: GeneratorConfig) -> None:
        super().__init__()
        config.validate()
        widths = config.widths()
        depth = config.depth
        use_norm = config.norm is Norm.INSTANCE
        self.down = nn.ModuleList()
        previous = in_channels
        for i, width in enumerate(widths):
            # No norm on the first block (pix2pix) nor the innermost one (its map is 1x1 at the design size).
            normalize = use_norm and 0 < i < depth - 1
            dropout = config.dropout if i >= depth - config.dropout_down_blocks else 0.0
            self.down.append(DownBlock(previous, width, normalize, dropout))
            previous = width
        self.up = nn.ModuleList()
        for j in range(depth - 1):
            out_width = widths[depth - 2 - j]
            dropout = config.dropout if j < config.dropout_blocks else 0.0
            self.up.append(UpBlock(previous, out_width, use_norm, dropout))
            previous = 2 * out_width
        self.lift, self.head = build_head(config.head, previous, in_channels, out_channels, widths[0])
        self.activation = OUTPUT_ACTIVATIONS[config.output_activation]()
        self.linear_path = AvailabilityLinearPath(out_channels) if config.linear_path else None
        self.voxel_path = AvailabilityVoxelPath(out_channels, config.voxel_path_width) if config.voxel_path_width else None

    def forward(self, x: Tensor) -> Tensor:
        inputs, skips = x, []
        for block in self.down:
            x = block(x)
            skips.append(x)
        # The innermost output is where decoding starts; the others are skips, deepest first.
        for block, skip in zip(self.up, skips[-2::-1]):
            x = block(x, skip)
        x = self.head(self.lift(x, inputs))
        if self.linear_path is not None:
            x = x + self.linear_path(inputs)
        if self.voxel_path is not None:
            x = x + self.voxel_path(inputs)
        return self.activation(x)


class PatchDiscriminator(nn.Module):
    """Scores a candidate against its condition: one real/fake map per contrast, size S / 2**blocks.

    The condition is the full real image (`DiscriminatorCondition.FULL`, authors) or the zero-imputed
    input with the availability mask (`IMPUTED`); build it with `conditioning.discriminator_condition`.

    >>> from MRImputationLib.models.mmgan.config import preset
    >>> discriminator = build_discriminator(preset("tiny", 3))
    >>> discriminator(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 3, 2, 2])
    """

    def __init__(self, candidate_channels: int, condition_channels: int, config: DiscriminatorConfig) -> None:
        super().__init__()
        config.validate()
        self.model = patch_layers(candidate_channels + condition_channels, tuple(config.widths), candidate_channels)

    def forward(self, candidate: Tensor, condition: Tensor) -> Tensor:
        return self.model(torch.cat((candidate, condition), dim=1))


def build_generator(config: ModelConfig) -> UNetGenerator:
    """The generator: `contrasts + extra_input_channels` channels in, `contrasts` out, initialised."""
    config.validate()
    generator = UNetGenerator(config.input_channels, config.contrasts, config.generator)
    init_weights(generator)
    if generator.linear_path is not None:  # start as the linear path alone: the U-Net adds a residual from zero
        last = [layer for layer in generator.head if isinstance(layer, nn.Conv2d)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    if generator.voxel_path is not None:
        generator.voxel_path.reset_parameters()
    return generator


def build_discriminator(config: ModelConfig) -> PatchDiscriminator:
    """The discriminator for `config.discriminator.condition`, initialised."""
    config.validate()
    condition_channels = config.discriminator.condition_channels(config.contrasts)
    discriminator = PatchDiscriminator(config.contrasts, condition_channels, config.discriminator)
    init_weights(discriminator)
    return discriminator


def generator_flops(config: ModelConfig) -> float:
    """Floating-point operations of one generator forward pass on one slice at `config.image_size`.

    Measured with `torch.utils.flop_counter.FlopCounterMode`, which counts a multiply-add as 2
    FLOPs and counts convolutions and matrix products only (norms, activations and padding are
    not counted). The network is built on the meta device, so nothing is allocated or computed.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        generator = UNetGenerator(config.input_channels, config.contrasts, config.generator).eval()
        x = torch.empty(1, config.input_channels, config.image_size, config.image_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        generator(x)
    return float(counter.get_total_flops())
