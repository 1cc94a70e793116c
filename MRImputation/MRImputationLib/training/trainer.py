"""MM-GAN training: implicit conditioning, least-squares GAN + L1, curriculum, exact resume, DDP.

One training step (MMGAN.md): draw one scenario for the batch; zero the missing inputs; the
generator's output has its available channels replaced by the real ones (implicit conditioning);
G minimises 0.1·MSE(D(ŷ, c), 1) + 0.9·L1 over the missing channels; D minimises
0.5·[MSE(D(x, c), 1) + MSE(D(ŷ, c), t)] with t = 1 on real-copied channels and 0 on synthesized
ones. Every random draw of the data path (order, scenario, flips) is a function of
(seed, epoch, step), and the checkpoint holds every RNG state, so a resumed run equals an
uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .curriculum import Curriculum
from .distributed import DistributedContext, ranks_agree
from ..core.errors import Cancelled
from ..core.contrasts import ContrastSet, Scenario
from ..models.mmgan.config import ModelConfig
from ..models.mmgan.networks import build_discriminator, build_generator, discriminator_condition, implicit_conditioning, zero_missing
from ..core.progress import Progress
from .config import TrainConfig


def _seed_for(*parts: int) -> int:
    value = 0x9E3779B97F4A7C15
    for p in parts:
        value = (value * 6364136223846793005 + int(p) + 1442695040888963407) % (1 << 63)
    return value


def availability(scenario: Scenario, batch: int, device) -> torch.Tensor:
    """(B, N) float mask, 1 where the contrast is given."""
    return torch.tensor(scenario.mask, dtype=torch.float32, device=device).expand(batch, -1)


def generator_input(real: torch.Tensor, available: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Zero the missing contrasts; append the availability mask as channels when the config asks for it."""
    x = zero_missing(real, available)
    if config.generator.extra_input_channels:
        mask = available[:, :, None, None].to(real.dtype).expand_as(real)
        x = torch.cat([x, mask[:, : config.generator.extra_input_channels]], dim=1)
    return x


def fake_targets(available: torch.Tensor, shape: torch.Size, config: ModelConfig) -> torch.Tensor:
    """D's per-channel target for the fake pair: 1 on real-copied channels, 0 on synthesized ones."""
    if config.fake_target == "zeros":
        return torch.zeros(shape, device=available.device)
    return available[:, :, None, None].expand(shape).to(torch.float32)


def l1_on_missing(fake: torch.Tensor, real: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
    missing = (1 - available)[:, :, None, None]
    per_channel = (fake - real).abs().mean(dim=(2, 3)) * missing[:, :, 0, 0]
    return per_channel.sum() / missing.sum().clamp(min=1)


@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0  # next step inside `epoch`
    global_step: int = 0
    best_psnr: float = -math.inf
    epoch_sums: dict = field(default_factory=dict)  # running loss sums of the current epoch
    epoch_steps: int = 0


def start_from_linear_regression(path, dataset, contrasts: ContrastSet) -> None:
    """Set the generator's linear path to the voxel-wise least-squares fit (the linear baseline) on
    the training slices, every scenario, so training starts from the baseline and learns the rest.
    Deterministic (no random draws), so every DDP rank computes the same; done once, when a run
    starts (`MMGANTrainer.fit` at step 0), never again on --resume."""
    from ..models.linear import LinearImputer

    fitted = LinearImputer(contrasts).fit(dataset.subject_stacks())
    for bits, solved in fitted.coefficients.items():
        for target, (intercept, weights) in solved.items():
            path.set_map(Scenario(bits).mask, target, intercept, weights)


class MMGANTrainer:
    """Trains one MM-GAN on a slice cache; the same object runs on one process or under torchrun."""

    def __init__(self, config: TrainConfig, model_config: ModelConfig, contrasts: ContrastSet, dataset,
                 run_dir: Path, context: DistributedContext, progress: Progress | None = None,
                 validator: Callable[[nn.Module], dict] | None = None) -> None:
        self.config, self.model_config, self.contrasts = config, model_config, contrasts
        self.dataset, self.run_dir, self.context = dataset, Path(run_dir), context
        self.progress = progress or Progress("none")
        self.validator = validator
        self.device = torch.device(context.device)
        self.curriculum = Curriculum.load(config.curriculum, contrasts)
        torch.manual_seed(config.seed)
        self.generator = build_generator(model_config).to(self.device)
        self.discriminator = build_discriminator(model_config).to(self.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda and config.channels_last:
            self.generator = self.generator.to(memory_format=torch.channels_last)
            self.discriminator = self.discriminator.to(memory_format=torch.channels_last)
        self.g, self.d = self.generator, self.discriminator
        if context.enabled:
            ids = [context.local_rank] if self.cuda else None
            self.g = nn.parallel.DistributedDataParallel(self.generator, device_ids=ids)
            self.d = nn.parallel.DistributedDataParallel(self.discriminator, device_ids=ids)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=tuple(config.betas))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=tuple(config.betas))
        step = config.lr_halve_every or 10**9
        self.sched_g = torch.optim.lr_scheduler.StepLR(self.opt_g, step_size=step, gamma=0.5)
        self.sched_d = torch.optim.lr_scheduler.StepLR(self.opt_d, step_size=step, gamma=0.5)
        self.amp_dtype = self._amp_dtype()
        self.state = TrainState()
        self.writer = None

    def _amp_dtype(self):
        choice = self.config.mixed_precision
        if choice == "off" or (choice == "auto" and not self.cuda):
            return None
        if choice not in ("auto", "bf16"):
            from ..core.errors import InputError

            raise InputError(f"mixed_precision {choice!r}: training supports bf16 (needs no loss scaling) or off.")
        return torch.bfloat16

    # -- data order: a pure function of (seed, epoch, step) ------------------------------------
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(self.dataset, num_replicas=self.context.world_size, rank=self.context.rank,
                                     shuffle=True, seed=self.config.seed, drop_last=True)
        sampler.set_epoch(epoch)
        indices = list(sampler)
        size = self.config.batch_size
        batches = [indices[i:i + size] for i in range(0, len(indices) - size + 1, size)]
        if self.config.steps_per_epoch:
            batches = batches[: self.config.steps_per_epoch]
        return batches

    def scenario_for(self, epoch: int, step: int) -> Scenario:
        allowed = self.curriculum.scenarios_at(epoch, self.config.epochs, self.contrasts)
        rng = torch.Generator().manual_seed(_seed_for(self.config.seed, epoch, step, 1))
        return allowed[int(torch.randint(len(allowed), (1,), generator=rng))]

    def augment(self, images: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        if not self.config.augment_flip:
            return images
        rng = torch.Generator().manual_seed(_seed_for(self.config.seed, epoch, step, 2))
        flip = torch.rand(images.shape[0], generator=rng) < 0.5
        images = images.clone()
        images[flip] = images[flip].flip(-1)
        return images

    # -- one step ----------------------------------------------------------------------------------
    def train_step(self, real: torch.Tensor, scenario: Scenario) -> dict:
        mc = self.model_config
        available = availability(scenario, real.shape[0], self.device)
        condition = discriminator_condition(mc, real, available)
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

        with autocast:
            fake = self.g(generator_input(real, available, mc))
        fake = fake.float()
        fake_ic = implicit_conditioning(fake, real, available)

        # Generator: D's weights are used but not trained here (plain module: no DDP reduction).
        for p in self.discriminator.parameters():
            p.requires_grad_(False)
        with autocast:
            pred_fake = self.discriminator(fake_ic, condition).float()
        adversarial = F.mse_loss(pred_fake, torch.ones_like(pred_fake))
        l1 = l1_on_missing(fake, real, available)
        loss_g = self.config.lambda_adversarial * adversarial + self.config.lambda_l1 * l1
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        for p in self.discriminator.parameters():
            p.requires_grad_(True)

        # Discriminator: real and fake pairs in one batch (instance norm keeps samples independent).
        with autocast:
            pred = self.d(torch.cat([real, fake_ic.detach()], 0), torch.cat([condition, condition], 0)).float()
        pred_real, pred_fake = pred.chunk(2, dim=0)
        loss_d = 0.5 * (F.mse_loss(pred_real, torch.ones_like(pred_real))
                        + F.mse_loss(pred_fake, fake_targets(available, pred_fake.shape, mc)))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        return {"loss_g": loss_g.item(), "loss_adv": adversarial.item(), "loss_l1": l1.item(), "loss_d": loss_d.item()}

    # -- checkpoints ---------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def save(self) -> None:
        if not self.context.is_main:
            return
        save_checkpoint(self.checkpoint_path, {
            "generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict(),
            "state": {**self.state.__dict__}, "rng": capture_rng_state(),
            "model_config": json.dumps(self.model_config.to_dict()), "train_config": json.dumps(self.config.to_dict()),
        })

    def resume(self) -> None:
        data = load_checkpoint(self.checkpoint_path, map_location=self.device)
        self.generator.load_state_dict(data["generator"])
        self.discriminator.load_state_dict(data["discriminator"])
        self.opt_g.load_state_dict(data["opt_g"])
        self.opt_d.load_state_dict(data["opt_d"])
        self.sched_g.load_state_dict(data["sched_g"])
        self.sched_d.load_state_dict(data["sched_d"])
        self.state = TrainState(**data["state"])
        restore_rng_state(data["rng"])

    # -- the loop ------------------------------------------------------------------------------------
    def _log(self, values: dict, step: int) -> None:
        if not self.context.is_main:
            return
        if self.writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:
                self.writer = False
                self.progress.log("tensorboard is not installed: curves are written to history.jsonl only")
        if self.writer:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)

    def _history(self, record: dict) -> None:
        if self.context.is_main:
            with open(self.run_dir / "history.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def fit(self) -> dict:
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        steps_per_epoch = max(len(self.epoch_batches(0)), 1)
        total = cfg.epochs * steps_per_epoch
        steps_this_call = 0
        stopped_early = False
        if self.generator.linear_path is not None and self.state.global_step == 0:  # a resumed run has it in its checkpoint
            start_from_linear_regression(self.generator.linear_path, self.dataset, self.contrasts)
        start = time.monotonic()
        try:
            while self.state.epoch < cfg.epochs:
                epoch = self.state.epoch
                batches = self.epoch_batches(epoch)
                # Its own generator: a DataLoader draws a base seed when iterated, which must not
                # consume the global RNG (that would shift dropout after a resume).
                loader = torch.utils.data.DataLoader(
                    self.dataset, batch_sampler=batches[self.state.step:], num_workers=cfg.num_workers,
                    pin_memory=self.cuda, generator=torch.Generator().manual_seed(_seed_for(cfg.seed, epoch, 3)))
                self.generator.train()
                self.discriminator.train()
                sums = self.state.epoch_sums
                epoch_start, n = time.monotonic(), 0
                for images, _mask in loader:
                    step = self.state.step
                    real = self.augment(images, epoch, step).to(self.device, non_blocking=True)
                    if self.cuda and cfg.channels_last:
                        real = real.contiguous(memory_format=torch.channels_last)
                    losses = self.train_step(real, self.scenario_for(epoch, step))
                    for k, v in losses.items():
                        sums[k] = sums.get(k, 0.0) + v
                    n += 1
                    self.state.epoch_steps += 1
                    self.state.step += 1
                    self.state.global_step += 1
                    steps_this_call += 1
                    if self.state.global_step % 10 == 0:
                        self._log({f"train/{k}": v for k, v in losses.items()}, self.state.global_step)
                    self.progress.update("train", self.state.global_step / total,
                                         f"epoch {epoch + 1}/{cfg.epochs} G {losses['loss_g']:.3f} D {losses['loss_d']:.3f}")
                    if cfg.checkpoint_every and self.state.global_step % cfg.checkpoint_every == 0:
                        self.save()
                    if cfg.stop_after_steps and steps_this_call >= cfg.stop_after_steps:
                        stopped_early = True
                        break
                if stopped_early:
                    self.save()
                    break
                seconds = time.monotonic() - epoch_start
                record = {"epoch": epoch + 1, **{k: v / max(self.state.epoch_steps, 1) for k, v in sums.items()},
                          "seconds": round(seconds, 2),
                          "slices_per_s": round(n * cfg.batch_size * self.context.world_size / max(seconds, 1e-9), 2),
                          "lr": self.opt_g.param_groups[0]["lr"]}
                self.sched_g.step()
                self.sched_d.step()
                if self.validator and self.context.is_main and (epoch + 1) % cfg.validate_every == 0:
                    with torch.random.fork_rng(devices=[self.device] if self.cuda else []):
                        record.update({f"val_{k}": v for k, v in self.validator(self.generator).items()})
                    self.generator.train()
                self.state.epoch += 1
                self.state.step = 0
                self.state.epoch_sums, self.state.epoch_steps = {}, 0
                if record.get("val_psnr", -math.inf) > self.state.best_psnr:
                    self.state.best_psnr = record["val_psnr"]
                    if self.context.is_main:
                        save_checkpoint(self.run_dir / "checkpoints" / "best.pt",
                                        {"generator": self.generator.state_dict(), "epoch": epoch + 1,
                                         "val_psnr": record["val_psnr"]})
                self._log({k: v for k, v in record.items() if k != "epoch"}, epoch + 1)
                self._history(record)
                self.save()
                self.progress.event("epoch", epochs=cfg.epochs, **record)
                self.progress.log(_epoch_line(record, cfg.epochs))
        except (Cancelled, KeyboardInterrupt):
            self.save()
            if self.context.is_main:
                self.progress.log(f"stopped; a checkpoint at epoch {self.state.epoch + 1} step {self.state.step} "
                                  "was written: continue with --resume")
            raise
        finally:
            if self.writer:
                self.writer.close()
                self.writer = None
        checksum = float(sum(p.double().sum().item() for p in self.generator.parameters()))
        in_sync = ranks_agree(checksum, self.context)
        return {"epochs_done": self.state.epoch, "global_step": self.state.global_step,
                "finished": self.state.epoch >= cfg.epochs, "stopped_early": stopped_early,
                "ranks_in_sync": in_sync, "world_size": self.context.world_size,
                "seconds": round(time.monotonic() - start, 2)}


def _epoch_line(record: dict, epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}", f"G {record.get('loss_g', float('nan')):.4f}",
             f"D {record.get('loss_d', float('nan')):.4f}", f"{record['slices_per_s']} slices/s"]
    if "val_psnr" in record:
        parts.append(f"val PSNR {record['val_psnr']:.2f} dB SSIM {record.get('val_ssim', float('nan')):.4f}")
    return ", ".join(parts)
