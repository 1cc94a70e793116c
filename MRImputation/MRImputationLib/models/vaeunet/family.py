"""The VAE-UNet family: `FAMILY`, behind the `ModelFamily` protocol (models/family.py).

A model serves one scenario: every contrast of its set but `target` given -> `target`. Network
"vae" (networks.py), step training_step.py. Uncertainty (`mrimpute impute --uncertainty K`) runs
the network in training mode, which samples the latent: K samples give the per-voxel spread.

>>> from ...core.contrasts import ContrastSet
>>> config = FAMILY.preset("vae-unet-tiny", 3)
>>> [s.bits for s in FAMILY.scenarios(config, ContrastSet(("T1", "T1c", "FLAIR"), "T1"))]
['110']
"""

from __future__ import annotations

from ...core.contrasts import Scenario
from ...core.errors import InputError
from ..family import PresetFamily
from .config import PRESETS, VAEUNetConfig


class VAEUNetFamily(PresetFamily):
    """Many given contrasts -> one missing contrast, with a variational bottleneck."""

    name = "vaeunet"
    inference_network = "vae"
    config_class, presets = VAEUNetConfig, PRESETS
    pairing = "paired"

    def scenarios(self, config: VAEUNetConfig, contrasts) -> list[Scenario]:
        if config.target not in contrasts.names:
            raise InputError(f"model {config.name!r}: its target {config.target} is not among the contrasts "
                             f"{', '.join(contrasts.names)}; set \"model_overrides\": {{\"target\": ...}} or "
                             "choose the contrasts with --contrasts.")
        if config.contrasts != len(contrasts):
            raise InputError(f"model {config.name!r} takes {config.contrasts} contrasts, not {len(contrasts)}.")
        return [Scenario("".join("0" if name == config.target else "1" for name in contrasts.names))]

    def build_networks(self, config: VAEUNetConfig) -> dict:
        return {"vae": self.build_inference_network(config)}

    def build_inference_network(self, config: VAEUNetConfig):
        from .networks import build_vae_unet

        return build_vae_unet(config)

    def generator_input(self, config: VAEUNetConfig, real, available):
        from .training_step import given_and_target

        return given_and_target(real, available)[0]

    def impute_batch(self, config: VAEUNetConfig, network, real, available, execution):
        from .training_step import given_and_target

        given, target = given_and_target(real, available)
        with execution.autocast():
            out = network(execution.layout(given))[0].float()
        imputed = real.clone()
        imputed[:, target] = out[:, 0]
        return imputed

    def training_step(self, config: VAEUNetConfig, settings, networks, execution):
        from .training_step import VAEUNetTrainingStep

        return VAEUNetTrainingStep(config, settings, networks, execution)


FAMILY = VAEUNetFamily()
