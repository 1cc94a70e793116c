"""The training loop of any model family: data order, curriculum, optimizer bookkeeping, checkpoints,
exact resume, DDP, validation.

What is trained and how one step goes belong to the family (models/family.py; MM-GAN's step and
losses are models/mmgan/training_step.py): the loop builds the family's networks, wraps them for
DDP, gives every optimizer the family declares a learning-rate schedule, draws one scenario per
batch from the curriculum and hands the batch to the family's step. Every random draw of the data
path (order, scenario, flips) is a function of (seed, epoch, step), and the checkpoint holds every
RNG state, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..core.contrasts import ContrastSet, Scenario
from ..core.device import training_precision, training_threads
from ..core.disk import explain_disk_full
from ..core.errors import Cancelled
from ..core.progress import Progress
from ..models.family import Execution, FamilyConfig, Networks, family_of
from .sampling import hide_absent, make_sampler, seed_for
from .checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .config import TrainConfig
from .curriculum import Curriculum
from .distributed import DistributedContext, ranks_agree
from .run_folder import RunFolder
from .warm_start import warm_start


@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0  # next step inside `epoch`
    global_step: int = 0
    best_psnr: float = -math.inf
    epoch_sums: dict = field(default_factory=dict)  # running loss sums of the current epoch
    epoch_steps: int = 0
    scenario_slices: dict = field(default_factory=dict)  # scenario bits -> training slices it was drawn for


class Trainer:
    """Trains one model of any family on a slice cache; the same object runs on one process or under torchrun."""

    def __init__(self, config: TrainConfig, model_config: FamilyConfig, contrasts: ContrastSet, dataset,
                 run_dir: Path, context: DistributedContext, progress: Progress | None = None,
                 validator: Callable[[nn.Module], dict] | None = None) -> None:
        self.config, self.model_config, self.contrasts = config, model_config, contrasts
        self.dataset, self.run, self.context = dataset, RunFolder(run_dir), context
        self.progress = progress or Progress("none")
        self.validator = validator
        self.device = torch.device(context.device)
        self.curriculum = Curriculum.load(config.curriculum, contrasts)
        self.family = family_of(model_config)
        served = self.family.scenarios(model_config, contrasts)
        self.served = {s.bits for s in served}
        self.sampler = make_sampler(self.family.pairing, dataset, config.batch_size, config.seed, contrasts,
                                    context.world_size, context.rank, served)
        self.cuda = self.device.type == "cuda"
        torch.manual_seed(config.seed)
        self.networks = self._networks(self.family.build_networks(model_config))
        self.generator = self.networks.built[self.family.inference_network]  # what validation and best.pt use
        self.precision = training_precision(config.mixed_precision, self.device.type)  # "bf16" or "fp32"
        self.amp_dtype = torch.bfloat16 if self.precision == "bf16" else None
        self.threads = torch.get_num_threads()  # set by fit()
        # The loop lays batches out channels_last itself (below), so the step only needs autocast.
        self.training_step = self.family.training_step(model_config, config, self.networks,
                                                       Execution(self.device.type, self.amp_dtype))
        self.schedulers = {name: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: self.lr_factor(epoch))
                           for name, optimizer in self.training_step.optimizers.items()}
        self.state = TrainState()
        self.last_record: dict | None = None  # the last finished epoch's history record, kept in checkpoints too
        self.writer = None

    def _networks(self, built: dict[str, nn.Module]) -> Networks:
        """The family's networks on the device (channels_last on CUDA if asked), and wrapped for DDP."""
        built = {name: network.to(self.device) for name, network in built.items()}
        if self.cuda and self.config.channels_last:
            built = {name: network.to(memory_format=torch.channels_last) for name, network in built.items()}
        trained = dict(built)
        if self.context.enabled:
            ids = [self.context.local_rank] if self.cuda else None
            trained = {name: nn.parallel.DistributedDataParallel(network, device_ids=ids)
                       for name, network in built.items()}
        return Networks(built, trained)

    def lr_factor(self, epoch: int) -> float:
        """The learning rate's factor at `epoch`: halved every `lr_halve_every` epochs (MM-GAN's IXI
        adaptation), and from `lr_linear_decay_after` on decayed linearly towards 0 at the last epoch
        (the CycleGAN paper: 100 epochs constant, 100 decaying)."""
        cfg = self.config
        factor = 0.5 ** (epoch // cfg.lr_halve_every) if cfg.lr_halve_every else 1.0
        if cfg.lr_linear_decay_after is not None:
            decay_epochs = max(cfg.epochs - cfg.lr_linear_decay_after, 0)
            factor *= 1.0 - max(0, epoch + 1 - cfg.lr_linear_decay_after) / float(decay_epochs + 1)
        return factor

    # -- data order: a pure function of (seed, epoch, step) ------------------------------------
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """`epoch`'s batches of dataset indices on this rank, as the family's pairing draws them (sampling.py)."""
        batches = self.sampler.batches(epoch)
        if self.config.steps_per_epoch:
            batches = batches[: self.config.steps_per_epoch]
        return batches

    def allowed_scenarios(self, epoch: int) -> list[Scenario]:
        """The scenarios the curriculum allows at `epoch` that the model serves (all it serves, if none)."""
        allowed = [s for s in self.curriculum.scenarios_at(epoch, self.config.epochs, self.contrasts)
                   if s.bits in self.served]
        return allowed or [s for s in self.contrasts.scenarios() if s.bits in self.served]

    def scenario_for(self, epoch: int, step: int) -> Scenario:
        """The scenario of a batch: one the curriculum allows at `epoch` and the model serves."""
        allowed = self.allowed_scenarios(epoch)
        rng = torch.Generator().manual_seed(seed_for(self.config.seed, epoch, step, 1))
        return allowed[int(torch.randint(len(allowed), (1,), generator=rng))]

    def augment(self, images: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        if not self.config.augment_flip:
            return images
        rng = torch.Generator().manual_seed(seed_for(self.config.seed, epoch, step, 2))
        flip = torch.rand(images.shape[0], generator=rng) < 0.5
        images = images.clone()
        images[flip] = images[flip].flip(-1)
        return images

    # -- one step ----------------------------------------------------------------------------------
    def train_step(self, real: torch.Tensor, scenario: Scenario, batch: list[int]) -> dict:
        """The family's step on one batch (dataset indices `batch`), with `scenario`'s contrasts given: per row,
        as the sampler makes it fit what the row's subject has (under unpaired sampling, each row's one
        visible contrast instead); a contrast a row does not have is zeroed. The losses by name."""
        epoch, step = self.state.epoch, self.state.step
        available, present = self.sampler.masks(batch, scenario, self.allowed_scenarios(epoch), epoch, step)
        for row in available.gt(0).tolist():  # CPU masks: no device sync
            bits = "".join("1" if a else "0" for a in row)
            self.state.scenario_slices[bits] = self.state.scenario_slices.get(bits, 0) + 1
        available = available.to(self.device)
        present = None if present is None else present.to(self.device)
        return self.training_step(hide_absent(real, present), available, present)

    # -- checkpoints ---------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run.last_checkpoint

    def save(self) -> None:
        if not self.context.is_main:
            return
        save_checkpoint(self.checkpoint_path, {
            **{name: network.state_dict() for name, network in self.networks.built.items()},
            **{f"opt_{name}": optimizer.state_dict() for name, optimizer in self.training_step.optimizers.items()},
            **{f"sched_{name}": scheduler.state_dict() for name, scheduler in self.schedulers.items()},
            "step_state": self.training_step.state_dict(),
            "state": {**self.state.__dict__}, "rng": capture_rng_state(),
            "model_config": json.dumps(self.model_config.to_dict()), "train_config": json.dumps(self.config.to_dict()),
            "history_record": json.dumps(self.last_record),
        })

    def resume(self) -> None:
        data = load_checkpoint(self.checkpoint_path, map_location=self.device)
        for name, network in self.networks.built.items():
            network.load_state_dict(data[name])
        for name, optimizer in self.training_step.optimizers.items():
            optimizer.load_state_dict(data[f"opt_{name}"])
        for name, scheduler in self.schedulers.items():
            # Checkpoints written before the schedule became a LambdaLR hold a StepLR's state (same factors).
            scheduler.load_state_dict({"lr_lambdas": [None], **data[f"sched_{name}"]})
        self.training_step.load_state_dict(data.get("step_state") or {})
        self.state = TrainState(**data["state"])
        restore_rng_state(data["rng"])
        self.last_record = json.loads(data.get("history_record") or "null")
        if self.last_record and self.context.is_main and not any(
                r.get("epoch") == self.last_record.get("epoch") for r in self.run.read_history()):
            self._history(self.last_record)  # the process stopped between the checkpoint and its history line

    # -- progress lines -------------------------------------------------------------------------------
    def _headline(self, losses: dict, spec: str) -> list[str]:
        """The family's headline losses that this run has, e.g. ["G 0.123", "D 0.456"]."""
        return [f"{label} {losses[key]:{spec}}" for key, label in self.training_step.headline if key in losses]

    def _epoch_line(self, record: dict, epochs: int) -> str:
        parts = [f"epoch {record['epoch']}/{epochs}", *self._headline(record, ".4f"),
                 f"{record['slices_per_s']} slices/s ({self.precision}, {self.threads} thread(s))"]
        if "val_psnr" in record:
            parts.append(f"val PSNR {record['val_psnr']:.2f} dB SSIM {record.get('val_ssim', float('nan')):.4f}")
        return ", ".join(parts)

    # -- the loop ------------------------------------------------------------------------------------
    def _log(self, values: dict, step: int) -> None:
        if not self.context.is_main:
            return
        if self.writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.run.tensorboard))
            except ImportError:
                self.writer = False
                self.progress.log("tensorboard is not installed: curves are written to history.jsonl only")
        if self.writer:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)

    def _history(self, record: dict) -> None:
        """Append `record` to history.jsonl, whole or not at all (a full disk truncates back: DiskFull)."""
        if not self.context.is_main:
            return
        line = memoryview((json.dumps(record) + "\n").encode("utf-8"))
        fd = os.open(self.run.history, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            try:
                with explain_disk_full(self.run.history, len(line), "continue with --resume once there is room"):
                    while line:
                        line = line[os.write(fd, line):]
            except BaseException:
                os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)

    def _train_epoch(self, epoch: int, total: int, steps_left: int | None) -> tuple[int, bool]:
        """`epoch`'s batches from `state.step` on, at most `steps_left` of them (None: no cap), each
        through the family's step; (steps run, stopped before the epoch's end)."""
        cfg = self.config
        batches = self.epoch_batches(epoch)
        # Its own generator: a DataLoader draws a base seed when iterated, which must not
        # consume the global RNG (that would shift dropout after a resume).
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=batches[self.state.step:], num_workers=cfg.num_workers,
            pin_memory=self.cuda, generator=torch.Generator().manual_seed(seed_for(cfg.seed, epoch, 3)))
        for network in self.networks.built.values():
            network.train()
        sums, n = self.state.epoch_sums, 0
        for images, _mask in loader:
            step = self.state.step
            real = self.augment(images, epoch, step).to(self.device, non_blocking=True)
            if self.cuda and cfg.channels_last:
                real = real.contiguous(memory_format=torch.channels_last)
            losses = self.train_step(real, self.scenario_for(epoch, step), batches[step])
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            self.state.epoch_steps += 1
            self.state.step += 1
            self.state.global_step += 1
            if self.state.global_step % 10 == 0:
                self._log({f"train/{k}": v for k, v in losses.items()}, self.state.global_step)
            self.progress.update("train", self.state.global_step / total,
                                 f"epoch {epoch + 1}/{cfg.epochs} {' '.join(self._headline(losses, '.3f'))}")
            if cfg.checkpoint_every and self.state.global_step % cfg.checkpoint_every == 0:
                self.save()
            if steps_left is not None and n >= steps_left:
                return n, True
        return n, False

    def _end_epoch(self, epoch: int, n: int, seconds: float) -> None:
        """After `epoch`'s last step (`n` steps this call, in `seconds`): its record with validation, the
        schedulers' step, the next epoch's state, the best checkpoint, the logs and a checkpoint."""
        cfg = self.config
        sums = self.state.epoch_sums
        record = {"epoch": epoch + 1, **{k: v / max(self.state.epoch_steps, 1) for k, v in sums.items()},
                  "seconds": round(seconds, 2),
                  "slices_per_s": round(n * self.sampler.rows_per_step * self.context.world_size / max(seconds, 1e-9), 2),
                  "lr": next(iter(self.training_step.optimizers.values())).param_groups[0]["lr"]}
        for scheduler in self.schedulers.values():
            scheduler.step()
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
                save_checkpoint(self.run.best_checkpoint,
                                {self.family.inference_network: self.generator.state_dict(), "epoch": epoch + 1,
                                 "val_psnr": record["val_psnr"]})
        self._log({k: v for k, v in record.items() if k != "epoch"}, epoch + 1)
        # The checkpoint first, then the history line: a run stopped between the two (kill -9, a full disk)
        # resumes from the checkpoint, which carries the record and appends it (resume()).
        self.last_record = record
        self.save()
        self._history(record)
        self.progress.epoch(record, cfg.epochs)
        self.progress.log(self._epoch_line(record, cfg.epochs))

    def fit(self) -> dict:
        """Train to the last epoch (or for `stop_after_steps`), checkpointing as it goes; the run's summary.

        Runs with `config.threads` CPU threads (None: `core.device.training_threads`'s adaptive
        choice) and gives the caller's thread count back at the end.
        """
        before = torch.get_num_threads()
        self.threads, why = training_threads(self.config.threads)
        torch.set_num_threads(self.threads)
        if self.context.is_main:
            self.progress.log(f"training on {self.device.type} in {self.precision}, {self.threads} CPU thread(s) ({why})")
        try:
            return self._fit()
        finally:
            torch.set_num_threads(before)

    def _fit(self) -> dict:
        cfg = self.config
        self.run.path.mkdir(parents=True, exist_ok=True)
        steps_per_epoch = max(len(self.epoch_batches(0)), 1)
        total = cfg.epochs * steps_per_epoch
        steps_this_call, stopped_early, training_seconds = 0, False, 0.0
        if self.state.global_step == 0:  # a resumed run has what begin_run sets in its checkpoint
            self.training_step.begin_run(self.dataset, self.contrasts)
            if cfg.init_from:
                line = warm_start(self.networks.built, cfg.init_from, self.model_config, self.contrasts,
                                  self.family.inference_network)
                if self.context.is_main:
                    self.progress.log(line)
        start = time.monotonic()
        try:
            while self.state.epoch < cfg.epochs:
                epoch = self.state.epoch
                epoch_start = time.monotonic()
                steps_left = cfg.stop_after_steps - steps_this_call if cfg.stop_after_steps else None
                n, stopped_early = self._train_epoch(epoch, total, steps_left)
                steps_this_call += n
                training_seconds += time.monotonic() - epoch_start
                if stopped_early:
                    self.save()
                    break
                self._end_epoch(epoch, n, time.monotonic() - epoch_start)
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
        slices = steps_this_call * self.sampler.rows_per_step * self.context.world_size
        return {"epochs_done": self.state.epoch, "global_step": self.state.global_step,
                "finished": self.state.epoch >= cfg.epochs, "stopped_early": stopped_early,
                "ranks_in_sync": in_sync, "world_size": self.context.world_size,
                "slices_per_scenario": dict(sorted(self.state.scenario_slices.items(), reverse=True)),
                "seconds": round(time.monotonic() - start, 2), "precision": self.precision, "threads": self.threads,
                "slices_per_s": round(slices / training_seconds, 2) if training_seconds > 0 else None}
