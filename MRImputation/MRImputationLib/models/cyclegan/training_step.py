"""The CycleGAN's training step: unpaired A and B slices in one batch, both directions trained at once.

Rows whose `available` marks contrast A hold a slice of an A-patient (their B channel is zeros and
is never read), rows marking B hold a slice of a B-patient (training/sampling.py draws them from
disjoint halves of the training patients). With G = G_AB, F = G_BA:

* generators: LSGAN  MSE(D_B(G(a)), 1) + MSE(D_A(F(b)), 1)
  + lambda_cycle * (|F(G(a)) - a| + |G(F(b)) - b|)
  + lambda_cycle * lambda_identity * (|F(a) - a| + |G(b) - b|)
  + lambda_ssim * ((1 - SSIM(F(G(a)), a)) + (1 - SSIM(G(F(b)), b)))
* discriminators: 0.5 * [MSE(D(real), 1) + MSE(D(pooled fake), 0)] for each of D_A and D_B

One Adam for both generators ("g") and one for both discriminators ("d"), as in the paper's code;
the image pools travel in checkpoints through `state_dict`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import CycleGANConfig
from .losses import ImagePool, ssim


def _lsgan(prediction: torch.Tensor, target: float) -> torch.Tensor:
    return F.mse_loss(prediction, torch.full_like(prediction, target))


def split_domains(real: torch.Tensor, available: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(real A slices, real B slices), each (n, 1, S, S), from an unpaired batch (ValueError when one is empty)."""
    in_a, in_b = available[:, 0] > 0, available[:, 1] > 0
    if not in_a.any() or not in_b.any() or (in_a & in_b).any():
        raise ValueError("a CycleGAN batch needs rows of each contrast, each row marking one (unpaired sampling).")
    return real[in_a, 0:1], real[in_b, 1:2]


class CycleGANTrainingStep:
    """The `TrainingStep` of the CycleGAN family (models/family.py)."""

    headline = (("loss_g", "G"), ("loss_d", "D"), ("loss_cycle", "cycle"))

    def __init__(self, config: CycleGANConfig, settings, networks, execution) -> None:
        self.config, self.execution = config, execution
        self.generators, self.discriminators = networks.built["generators"], networks.built["discriminators"]
        self.g, self.d = networks.trained["generators"], networks.trained["discriminators"]
        betas = tuple(settings.betas)
        self.optimizers = {"g": torch.optim.Adam(self.generators.parameters(), lr=settings.lr, betas=betas),
                           "d": torch.optim.Adam(self.discriminators.parameters(), lr=settings.lr, betas=betas)}
        self.pool_a, self.pool_b = ImagePool(config.pool_size), ImagePool(config.pool_size)

    def begin_run(self, dataset, contrasts) -> None:
        pass

    def state_dict(self) -> dict:
        return {"pool_a": self.pool_a.state_dict(), "pool_b": self.pool_b.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        device = next(self.generators.parameters()).device
        self.pool_a.load_state_dict(state.get("pool_a", torch.zeros(0)), device)
        self.pool_b.load_state_dict(state.get("pool_b", torch.zeros(0)), device)

    def _generator_losses(self, real_a, real_b, out) -> dict[str, torch.Tensor]:
        config = self.config
        for p in self.discriminators.parameters():
            p.requires_grad_(False)
        with self.execution.autocast():
            pred_a, pred_b = self.discriminators(out["fake_a"], out["fake_b"])
        losses = {"loss_adv": _lsgan(pred_a.float(), 1.0) + _lsgan(pred_b.float(), 1.0),
                  "loss_cycle": F.l1_loss(out["rec_a"], real_a) + F.l1_loss(out["rec_b"], real_b),
                  "loss_identity": F.l1_loss(out["idt_a"], real_a) + F.l1_loss(out["idt_b"], real_b)}
        total = (losses["loss_adv"] + config.lambda_cycle * losses["loss_cycle"]
                 + config.lambda_cycle * config.lambda_identity * losses["loss_identity"])
        if config.lambda_ssim:
            losses["loss_ssim"] = (1 - ssim(out["rec_a"], real_a)) + (1 - ssim(out["rec_b"], real_b))
            total = total + config.lambda_ssim * losses["loss_ssim"]
        losses["loss_g"] = total
        return losses

    def __call__(self, real: torch.Tensor, available: torch.Tensor, present: torch.Tensor | None = None
                 ) -> dict[str, float]:
        real_a, real_b = split_domains(real, available)  # each row is seen in its one available contrast
        with self.execution.autocast():
            out = self.g(real_a, real_b)
        out = {k: v.float() for k, v in out.items()}
        losses = self._generator_losses(real_a, real_b, out)
        self.optimizers["g"].zero_grad(set_to_none=True)
        losses["loss_g"].backward()
        self.optimizers["g"].step()
        for p in self.discriminators.parameters():
            p.requires_grad_(True)

        fake_a, fake_b = self.pool_a.query(out["fake_a"]), self.pool_b.query(out["fake_b"])
        with self.execution.autocast():
            pred_a, pred_b = self.d(torch.cat([real_a, fake_a]), torch.cat([real_b, fake_b]))
        real_pred_a, fake_pred_a = pred_a.float().split([len(real_a), len(fake_a)])
        real_pred_b, fake_pred_b = pred_b.float().split([len(real_b), len(fake_b)])
        loss_d = 0.5 * (_lsgan(real_pred_a, 1.0) + _lsgan(fake_pred_a, 0.0)
                        + _lsgan(real_pred_b, 1.0) + _lsgan(fake_pred_b, 0.0))
        self.optimizers["d"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["d"].step()
        return {**{k: v.item() for k, v in losses.items()}, "loss_d": loss_d.item()}
