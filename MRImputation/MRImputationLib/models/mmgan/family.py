"""The MM-GAN family: `FAMILY`, this subpackage behind the `ModelFamily` protocol (models/family.py).

Networks "generator" (the U-Net, which imputes) and "discriminator" (networks.py); the
generator's input and implicit conditioning (conditioning.py); the step and its losses
(training_step.py). Torch is imported when a network or a step is first asked for, so reading a
configuration needs none.

>>> FAMILY.preset("tiny", 3).generator.depth
4
"""

from __future__ import annotations

from ..family import PresetFamily
from .config import PRESETS, ModelConfig


class MMGANFamily(PresetFamily):
    """One generator for every scenario, trained adversarially with implicit conditioning (MMGAN.md)."""

    name = "mmgan"
    inference_network = "generator"
    config_class, presets = ModelConfig, PRESETS
    pairing = "paired"

    def scenarios(self, config: ModelConfig, contrasts):
        return contrasts.scenarios()  # one generator for every combination

    def build_networks(self, config: ModelConfig) -> dict:
        from .networks import build_discriminator, build_generator

        generator = build_generator(config)  # first: the order of random initialisation is part of a run
        return {"generator": generator, "discriminator": build_discriminator(config)}

    def build_inference_network(self, config: ModelConfig):
        from .networks import build_generator

        return build_generator(config)

    def generator_input(self, config: ModelConfig, real, available):
        from .conditioning import generator_input

        return generator_input(real, available, config)

    def impute_batch(self, config: ModelConfig, network, real, available, execution):
        from .conditioning import generator_input, implicit_conditioning

        x = execution.layout(generator_input(real, available, config))
        with execution.autocast():
            fake = network(x)
        return implicit_conditioning(fake.float(), real[:, : config.contrasts], available)

    def training_step(self, config: ModelConfig, settings, networks, execution):
        from .training_step import MMGANTrainingStep

        return MMGANTrainingStep(config, settings, networks, execution)


FAMILY = MMGANFamily()
