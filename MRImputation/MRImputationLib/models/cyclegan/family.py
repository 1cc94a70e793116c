"""The CycleGAN family: `FAMILY`, behind the `ModelFamily` protocol (models/family.py).

A model of two contrasts A and B (the contrast set's order) serves A -> B and B -> A. Trained
unpaired: `pairing = "unpaired"` makes the trainer draw A slices and B slices from disjoint
halves of the training patients (training/sampling.py). Networks "generators" (G_AB and G_BA in
one module, which imputes) and "discriminators" (D_A and D_B); the step is training_step.py.

>>> from ...core.contrasts import ContrastSet
>>> [s.bits for s in FAMILY.scenarios(FAMILY.preset("cyclegan-tiny", 2), ContrastSet(("T1", "FLAIR"), "T1"))]
['10', '01']
"""

from __future__ import annotations

from ..family import PresetFamily
from .config import PRESETS, CycleGANConfig


class CycleGANFamily(PresetFamily):
    """Two generators and two discriminators, adversarial + cycle-consistency + identity losses."""

    name = "cyclegan"
    inference_network = "generators"
    config_class, presets = CycleGANConfig, PRESETS
    pairing = "unpaired"

    def scenarios(self, config: CycleGANConfig, contrasts):
        return contrasts.scenarios()  # two contrasts: A given -> B, B given -> A

    def build_networks(self, config: CycleGANConfig) -> dict:
        from .networks import build_discriminators, build_generators

        generators = build_generators(config)  # first: the order of random initialisation is part of a run
        return {"generators": generators, "discriminators": build_discriminators(config)}

    def build_inference_network(self, config: CycleGANConfig):
        from .networks import build_generators

        return build_generators(config)

    def generator_input(self, config: CycleGANConfig, real, available):
        """The one given contrast of each row, (B, 1, S, S)."""
        return (real * available[:, :, None, None]).sum(dim=1, keepdim=True)

    def impute_batch(self, config: CycleGANConfig, network, real, available, execution):
        import torch

        to_b = bool(available[0, 0] > 0)
        given = self.generator_input(config, real, available)
        with execution.autocast():
            fake = network.translate(execution.layout(given), to_b).float()
        out = real.clone()
        out[:, 1 if to_b else 0] = fake[:, 0]
        return torch.where(available[:, :, None, None].bool(), real, out)

    def training_step(self, config: CycleGANConfig, settings, networks, execution):
        from .training_step import CycleGANTrainingStep

        return CycleGANTrainingStep(config, settings, networks, execution)


FAMILY = CycleGANFamily()
