"""The VAE-UNet's step: L1 between the decoded and the real target + kl_weight * KL(q(z | inputs) || N(0, I)).

The trainer draws only the scenario the model serves (every contrast but the target given), so the
missing channel of `available` is the target. The KL is the mean over latent elements of
-0.5 * (1 + logvar - mu^2 - exp(logvar)). One Adam ("g").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import VAEUNetConfig


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean KL divergence of N(mu, exp(logvar)) from N(0, 1) per latent element.

    >>> float(kl_divergence(torch.zeros(3), torch.zeros(3)))
    0.0
    """
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean()


def given_and_target(real: torch.Tensor, available: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(the given channels (B, N-1, S, S), the target's channel) for a batch of one served scenario."""
    keep = available[0] > 0
    missing = (~keep).nonzero().flatten().tolist()
    if len(missing) != 1 or not bool((available == available[0]).all()):
        raise ValueError("a VAE-UNet batch gives every contrast but its one target, the same in every row.")
    return real[:, keep], missing[0]


class VAEUNetTrainingStep:
    """The `TrainingStep` of the VAE-UNet family (models/family.py)."""

    headline = (("loss", "loss"), ("loss_kl", "KL"))

    def __init__(self, config: VAEUNetConfig, settings, networks, execution) -> None:
        self.config, self.execution = config, execution
        self.network = networks.trained["vae"]
        self.optimizers = {"g": torch.optim.Adam(networks.built["vae"].parameters(), lr=settings.lr,
                                                 betas=tuple(settings.betas))}

    def begin_run(self, dataset, contrasts) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __call__(self, real: torch.Tensor, available: torch.Tensor, present: torch.Tensor | None = None
                 ) -> dict[str, float]:
        # The sampler gives only rows whose subject has the inputs and the target (the one served scenario).
        given, target = given_and_target(real, available)
        with self.execution.autocast():
            out, mu, logvar = self.network(given)
        l1 = F.l1_loss(out.float(), real[:, target:target + 1])
        kl = kl_divergence(mu.float(), logvar.float())
        loss = l1 + self.config.kl_weight * kl
        self.optimizers["g"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["g"].step()
        return {"loss": loss.item(), "loss_l1": l1.item(), "loss_kl": kl.item()}
