"""MM-GAN's training step and losses (MMGAN.md), run by the family-agnostic trainer.

One step on a batch whose scenario the trainer drew: zero the missing inputs; the generator's
output has its available channels replaced by the real ones (implicit conditioning); G minimises
lambda_adversarial·MSE(D(ŷ, c), 1) + lambda_l1·L1 over the missing channels (0.1 and 0.9 in
MM-GAN; `pixel_loss` "mse" puts the squared error in L1's place, the error PSNR scores); D minimises 0.5·[MSE(D(x, c), 1) + MSE(D(ŷ, c), t)], with c the discriminator's condition
and t the fake target (`FakeTarget`: 1 on real-copied channels and 0 on synthesized ones, or all
zeros). With lambda_adversarial 0 the step is plain regression: D is neither asked nor trained. For a subject that lacks some contrasts (`present`), L1 and both MSEs cover the contrasts it
has, and the absent channel is zeros in the fake pair as it is in the real one. Both networks have an Adam optimizer ("g" and "d"), whose states the trainer keeps in
checkpoints as opt_g and opt_d (no "d" in plain regression).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .conditioning import discriminator_condition, generator_input, implicit_conditioning
from .config import FakeTarget, ModelConfig
from .paths import start_from_linear_regression


def pixel_loss_on_missing(fake: torch.Tensor, real: torch.Tensor, available: torch.Tensor,
                          present: torch.Tensor | None = None, kind: str = "l1") -> torch.Tensor:
    """Mean absolute ("l1") or squared ("mse") error over the missing channels the subject has (mean over
    them; 0 when none)."""
    missing = 1 - available
    if present is not None:
        missing = missing * present
    error = (fake - real).abs() if kind == "l1" else (fake - real) ** 2
    per_channel = error.mean(dim=(2, 3)) * missing
    return per_channel.sum() / missing.sum().clamp(min=1)


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
    """MSE of per-contrast maps (B, N, h, w), over the contrasts each row's subject has (all, if None)."""
    if present is None:
        return F.mse_loss(prediction, target)
    weight = present[:, :, None, None].expand_as(prediction)
    return ((prediction - target) ** 2 * weight).sum() / weight.sum().clamp(min=1)


def _per_channel_targets(available: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return available[:, :, None, None].expand(shape).to(torch.float32)


def _zero_targets(available: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return torch.zeros(shape, device=available.device)


FAKE_TARGETS: dict[FakeTarget, Callable[[torch.Tensor, torch.Size], torch.Tensor]] = {
    FakeTarget.PER_CHANNEL: _per_channel_targets,
    FakeTarget.ZEROS: _zero_targets,
}


def fake_targets(available: torch.Tensor, shape: torch.Size, config: ModelConfig) -> torch.Tensor:
    """D's per-channel target for the fake pair under `config.fake_target`."""
    return FAKE_TARGETS[config.fake_target](available, shape)


class MMGANTrainingStep:
    """The `TrainingStep` of the MM-GAN family (models/family.py).

    `networks.built` are the plain modules, `networks.trained` the same wrapped for DDP under
    torchrun; `settings` are the trainer's (lr, betas, lambda_adversarial, lambda_l1).
    """

    headline = (("loss_g", "G"), ("loss_d", "D"))

    def __init__(self, config: ModelConfig, settings, networks, execution) -> None:
        self.config, self.settings, self.execution = config, settings, execution
        self.generator, self.discriminator = networks.built["generator"], networks.built["discriminator"]
        self.g, self.d = networks.trained["generator"], networks.trained["discriminator"]
        betas = tuple(settings.betas)
        self.optimizers = {"g": torch.optim.Adam(self.generator.parameters(), lr=settings.lr, betas=betas)}
        if settings.lambda_adversarial > 0:  # plain regression trains no discriminator
            self.optimizers["d"] = torch.optim.Adam(self.discriminator.parameters(), lr=settings.lr, betas=betas)

    def begin_run(self, dataset, contrasts) -> None:
        """The linear path, when the generator has one, starts as the linear baseline of `dataset`."""
        if self.generator.linear_path is not None:
            start_from_linear_regression(self.generator.linear_path, dataset, contrasts)

    def state_dict(self) -> dict:
        return {}  # networks and optimizers are all there is

    def load_state_dict(self, state: dict) -> None:
        pass

    def __call__(self, real: torch.Tensor, available: torch.Tensor, present: torch.Tensor | None = None
                 ) -> dict[str, float]:
        config, settings = self.config, self.settings
        opt_g, opt_d = self.optimizers["g"], self.optimizers.get("d")
        slices, real = real, real[:, : config.contrasts]  # with 2.5-D context, the neighbours follow the slice

        with self.execution.autocast():
            fake = self.g(generator_input(slices, available, config))
        fake = fake.float()
        pixel = pixel_loss_on_missing(fake, real, available, present, settings.pixel_loss)
        if opt_d is None:  # plain regression (lambda_adversarial 0): no adversary to ask or train
            loss_g = settings.lambda_l1 * pixel
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            return {"loss_g": loss_g.item(), "loss_l1": pixel.item()}

        condition = discriminator_condition(config, real, available)
        fake_ic = implicit_conditioning(fake, real, available)
        if present is not None:  # a contrast the subject lacks is zeros in the real pair: the fake's too, unjudged
            fake_ic = fake_ic * present[:, :, None, None]

        # Generator: D's weights are used but not trained here (plain module: no DDP reduction).
        for p in self.discriminator.parameters():
            p.requires_grad_(False)
        with self.execution.autocast():
            pred_fake = self.discriminator(fake_ic, condition).float()
        adversarial = masked_mse(pred_fake, torch.ones_like(pred_fake), present)
        loss_g = settings.lambda_adversarial * adversarial + settings.lambda_l1 * pixel
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for p in self.discriminator.parameters():
            p.requires_grad_(True)

        # Discriminator: real and fake pairs in one batch (instance norm keeps samples independent).
        with self.execution.autocast():
            pred = self.d(torch.cat([real, fake_ic.detach()], 0), torch.cat([condition, condition], 0)).float()
        pred_real, pred_fake = pred.chunk(2, dim=0)
        loss_d = 0.5 * (masked_mse(pred_real, torch.ones_like(pred_real), present)
                        + masked_mse(pred_fake, fake_targets(available, pred_fake.shape, config), present))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        return {"loss_g": loss_g.item(), "loss_adv": adversarial.item(), "loss_l1": pixel.item(), "loss_d": loss_d.item()}
