"""How an epoch's slices are drawn into batches, by the family's `pairing` (models/family.py).

* "paired" (MM-GAN, VAE-UNet): every training slice once per epoch in a seeded order, split among
  DDP ranks; every contrast of a slice is there, and the batch's scenario (drawn by the trainer)
  says which are given.
* "unpaired" (CycleGAN): the training patients are split once, by the run's seed, into two
  disjoint halves; the first is seen only in contrast A, the second only in contrast B. A batch is
  `batch_size` A slices then `batch_size` B slices, each shuffled per epoch; the unseen channel of
  every row is zeroed before the step, so nothing paired can leak into training.

Every draw is a function of (seed, epoch), so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ..core.contrasts import ContrastSet


@dataclass
class PairedSampler:
    dataset: object
    batch_size: int
    seed: int
    contrasts: ContrastSet
    world_size: int = 1
    rank: int = 0

    def batches(self, epoch: int) -> list[list[int]]:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(self.dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True,
                                     seed=self.seed, drop_last=True)
        sampler.set_epoch(epoch)
        indices = list(sampler)
        size = self.batch_size
        return [indices[i:i + size] for i in range(0, len(indices) - size + 1, size)]

    def prepare(self, real: torch.Tensor, batch: list[int], scenario_available: torch.Tensor):
        """(real, available) for the step: the slices whole, and the scenario's given contrasts."""
        return real, scenario_available

    def describe(self) -> dict:
        return {"pairing": "paired"}


def unpaired_domains(subjects: list[str], seed: int) -> dict[str, int]:
    """Each training patient's one visible contrast (0 = A, 1 = B): a seeded half each, disjoint.

    >>> unpaired_domains(["a", "b", "c", "d"], 0) == unpaired_domains(["d", "c", "b", "a"], 0)
    True
    >>> sorted(unpaired_domains(["a", "b", "c", "d"], 0).values())
    [0, 0, 1, 1]
    """
    ordered = sorted(subjects)
    random.Random(seed).shuffle(ordered)
    half = (len(ordered) + 1) // 2
    return {subject: 0 if i < half else 1 for i, subject in enumerate(ordered)}


class UnpairedSampler:
    """A slices of A-patients and B slices of B-patients; see the module's docstring."""

    def __init__(self, dataset, batch_size: int, seed: int, contrasts: ContrastSet, world_size: int = 1,
                 rank: int = 0) -> None:
        if len(contrasts) != 2:
            raise ValueError("unpaired sampling translates between two contrasts")
        subjects = sorted(set(dataset.subjects))
        if len(subjects) < 2:
            from ..core.errors import InputError

            raise InputError(f"unpaired training needs at least two training subjects (one per contrast); the split "
                             f"has {len(subjects)}: {', '.join(subjects)}.")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.world_size, self.rank, self.contrasts = world_size, rank, contrasts
        self.domains = unpaired_domains(subjects, seed)
        self.slices = [[], []]
        for index in range(len(dataset)):
            self.slices[self.domains[dataset.locate(index)[0]]].append(index)
        self.of_index = {index: d for d in (0, 1) for index in self.slices[d]}

    def _shuffled(self, domain: int, epoch: int) -> list[int]:
        order = torch.randperm(len(self.slices[domain]), generator=torch.Generator().manual_seed(
            self.seed * 1_000_003 + epoch * 2 + domain))
        return [self.slices[domain][i] for i in order.tolist()][self.rank::self.world_size]

    def batches(self, epoch: int) -> list[list[int]]:
        a, b = self._shuffled(0, epoch), self._shuffled(1, epoch)
        size = self.batch_size
        return [a[i:i + size] + b[i:i + size] for i in range(0, min(len(a), len(b)) - size + 1, size)]

    def prepare(self, real: torch.Tensor, batch: list[int], scenario_available: torch.Tensor):
        """(real with each row's unseen contrast zeroed, the (B, 2) mask of the contrast each row is seen in);
        the scenario plays no part: both directions train on every batch."""
        rows = torch.zeros(len(batch), 2, device=real.device)
        for row, index in enumerate(batch):
            rows[row, self.of_index[index]] = 1.0
        return real * rows[:, :, None, None].to(real.dtype), rows

    def describe(self) -> dict:
        names = self.contrasts.names
        return {"pairing": "unpaired",
                "domains": {names[d]: sorted(s for s, v in self.domains.items() if v == d) for d in (0, 1)},
                "slices": {names[d]: len(self.slices[d]) for d in (0, 1)}}


SAMPLERS = {"paired": PairedSampler, "unpaired": UnpairedSampler}


def make_sampler(pairing: str, dataset, batch_size: int, seed: int, contrasts: ContrastSet, world_size: int = 1,
                 rank: int = 0):
    """The sampler a family's `pairing` asks for."""
    return SAMPLERS[pairing](dataset, batch_size, seed, contrasts, world_size, rank)
