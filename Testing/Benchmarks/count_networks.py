"""Print a Markdown table of network sizes per preset: parameters and generator GFLOP per slice.

    python Testing/Benchmarks/count_networks.py [--contrasts 3,4]

Networks are built on the meta device, so nothing is allocated; FLOPs are measured with
torch.utils.flop_counter.FlopCounterMode (a multiply-add counts as 2 FLOPs; convolutions only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "MRImputation"))

import torch  # noqa: E402

from MRImputationLib.models.mmgan.config import PRESETS, preset  # noqa: E402
from MRImputationLib.models.layers import count_parameters  # noqa: E402
from MRImputationLib.models.mmgan.networks import PatchDiscriminator, UNetGenerator, generator_flops  # noqa: E402


def rows(contrasts: list[int]) -> list[tuple]:
    table = []
    for name in PRESETS:
        for n in contrasts:
            config = preset(name, n)
            with torch.device("meta"):
                generator = UNetGenerator(config.input_channels, n, config.generator)
                condition = config.discriminator.condition_channels(n)
                discriminator = PatchDiscriminator(n, condition, config.discriminator)
            table.append((name, n, config.image_size, count_parameters(generator),
                          count_parameters(discriminator), generator_flops(config) / 1e9))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contrasts", default="3,4", help="comma-separated channel counts (default 3,4)")
    args = parser.parse_args()
    contrasts = [int(c) for c in args.contrasts.split(",")]
    print("| preset | N | image size | generator params | discriminator params | generator GFLOP / slice |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, size, g, d, gflop in rows(contrasts):
        print(f"| {name} | {n} | {size} | {g:,} ({g / 1e6:.2f} M) | {d:,} ({d / 1e6:.2f} M) | {gflop:.3f} |")


if __name__ == "__main__":
    main()
