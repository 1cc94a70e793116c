"""How an epoch's slices are drawn into batches, by the family's `pairing` (models/family.py).

* "paired" (MM-GAN, VAE-UNet): every training slice once per epoch in a seeded order, split among
  DDP ranks; the batch's scenario (drawn by the trainer) says which contrasts are given. A subject
  that lacks some contrasts (incomplete archives) gets, in its rows, a scenario whose given and
  target contrasts it has: the batch's own if it fits, else one drawn from those the curriculum
  allows that fit; the step learns only from the contrasts it has (`present`). Subjects no served
  scenario fits (a VAE-UNet's target absent) are left out of the epoch.
* "unpaired" (CycleGAN): the training patients are split once, by the run's seed, into two
  disjoint halves; the first is seen only in contrast A, the second only in contrast B. A batch is
  `batch_size` A slices then `batch_size` B slices, each shuffled per epoch; the unseen channel of
  every row is zeroed before the step, so nothing paired can leak into training.

Every draw is a function of (seed, epoch), so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import random
from typing import Sequence

import torch

from ..core.contrasts import ContrastSet, Scenario
from ..core.errors import InputError


def seed_for(*parts: int) -> int:
    """A 63-bit seed from whole numbers (seed, epoch, step, purpose): every draw of the data path."""
    value = 0x9E3779B97F4A7C15
    for p in parts:
        value = (value * 6364136223846793005 + int(p) + 1442695040888963407) % (1 << 63)
    return value


def fits(scenario: Scenario, present: Sequence[bool]) -> bool:
    """A subject with contrasts `present` can be trained on `scenario`: it has every given contrast and at
    least one missing one to learn.

    >>> fits(Scenario("110"), (True, True, False)), fits(Scenario("101"), (True, True, False))
    (False, False)
    >>> fits(Scenario("100"), (True, True, False))
    True
    """
    given = all(p for p, available in zip(present, scenario.mask) if available)
    return given and any(p for p, available in zip(present, scenario.mask) if not available)


def hide_absent(real: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
    """`real` with every contrast a row does not have (or is not seen in, unpaired) zeroed, in the slice and
    in its 2.5-D neighbours (groups of the same channels after it); as is when None."""
    if present is None:
        return real
    weight = present[:, :, None, None].to(real.dtype)
    return real * weight.repeat(1, real.shape[1] // weight.shape[1], 1, 1)


class PairedSampler:
    """Slices of every usable training subject in a seeded order; see the module's docstring."""

    def __init__(self, dataset, batch_size: int, seed: int, contrasts: ContrastSet, world_size: int = 1,
                 rank: int = 0, served: Sequence[Scenario] | None = None) -> None:
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.contrasts, self.world_size, self.rank = contrasts, world_size, rank
        served = list(served or contrasts.scenarios())
        self.served = served
        presence = getattr(dataset, "present", None) or [tuple([True] * len(contrasts))]
        self.complete = all(all(p) for p in presence)
        usable = [any(fits(s, p) for s in served) for p in presence]
        self.left_out = sorted({dataset.subjects[k] for k, ok in enumerate(usable) if not ok}) if not all(usable) else []
        self.indices = (None if not self.left_out else
                        [i for k, ok in enumerate(usable) if ok
                         for i in range(int(dataset.offsets[k]), int(dataset.offsets[k + 1]))])
        self.rows_per_step = batch_size

    def batches(self, epoch: int) -> list[list[int]]:
        from torch.utils.data.distributed import DistributedSampler

        pool = self.dataset if self.indices is None else self.indices
        sampler = DistributedSampler(pool, num_replicas=self.world_size, rank=self.rank, shuffle=True,
                                     seed=self.seed, drop_last=True)
        sampler.set_epoch(epoch)
        indices = list(sampler) if self.indices is None else [self.indices[i] for i in sampler]
        size = self.batch_size
        return [indices[i:i + size] for i in range(0, len(indices) - size + 1, size)]

    def masks(self, batch: list[int], scenario: Scenario, allowed: Sequence[Scenario], epoch: int, step: int
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(available, present), (B, N) CPU masks for the step: per row the given contrasts (the batch's
        scenario, or for a subject it does not fit one of `allowed` that does) and the contrasts its subject
        has (None when every subject has every contrast)."""
        if self.complete:
            return torch.tensor(scenario.mask, dtype=torch.float32).expand(len(batch), -1), None
        presence = [self.dataset.presence(i) for i in batch]
        rows = []
        for row, present in enumerate(presence):
            chosen = scenario
            if not fits(scenario, present):
                options = [s for s in allowed if fits(s, present)] or [s for s in self.served if fits(s, present)]
                pick = torch.randint(len(options), (1,), generator=torch.Generator().manual_seed(
                    seed_for(self.seed, epoch, step, 10 + row)))
                chosen = options[int(pick)]
            rows.append(chosen.mask)
        return torch.tensor(rows, dtype=torch.float32), torch.tensor(presence, dtype=torch.float32)

    def describe(self) -> dict:
        out = {"pairing": "paired"}
        if self.left_out:
            out["left_out"] = self.left_out  # no scenario the model serves fits what they have
        return out


def unpaired_domains(subjects: list[str], seed: int, presence: dict[str, tuple[bool, bool]] | None = None
                     ) -> dict[str, int]:
    """Each training patient's one visible contrast (0 = A, 1 = B): a patient with one of the two is seen
    in it; those with both are split into seeded halves, disjoint.

    >>> unpaired_domains(["a", "b", "c", "d"], 0) == unpaired_domains(["d", "c", "b", "a"], 0)
    True
    >>> sorted(unpaired_domains(["a", "b", "c", "d"], 0).values())
    [0, 0, 1, 1]
    >>> unpaired_domains(["a", "b", "c"], 0, {"a": (True, False), "b": (False, True), "c": (True, False)})
    {'a': 0, 'b': 1, 'c': 0}
    """
    presence = presence or {}
    both = sorted(s for s in subjects if all(presence.get(s, (True, True))))
    random.Random(seed).shuffle(both)
    half = (len(both) + 1) // 2
    domains = {subject: 0 if i < half else 1 for i, subject in enumerate(both)}
    domains.update({s: 0 if presence[s][0] else 1 for s in subjects if s not in domains})
    return dict(sorted(domains.items()))


class UnpairedSampler:
    """A slices of A-patients and B slices of B-patients; see the module's docstring."""

    def __init__(self, dataset, batch_size: int, seed: int, contrasts: ContrastSet, world_size: int = 1,
                 rank: int = 0, served: Sequence[Scenario] | None = None) -> None:
        if len(contrasts) != 2:
            raise ValueError("unpaired sampling translates between two contrasts")
        subjects = sorted(set(dataset.subjects))
        presence = dict(zip(dataset.subjects, getattr(dataset, "present", None) or [(True, True)] * len(subjects)))
        if len(subjects) < 2:
            raise InputError(f"unpaired training needs at least two training subjects (one per contrast); the split "
                             f"has {len(subjects)}: {', '.join(subjects)}.")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.world_size, self.rank, self.contrasts = world_size, rank, contrasts
        self.domains = unpaired_domains(subjects, seed, presence)
        if len(set(self.domains.values())) < 2:
            raise InputError(f"unpaired training needs subjects seen in each of {', '.join(contrasts.names)}; every "
                             f"training subject has only {contrasts.names[next(iter(self.domains.values()))]}.")
        self.slices = [[], []]
        for k, subject in enumerate(dataset.subjects):
            self.slices[self.domains[subject]].extend(range(int(dataset.offsets[k]), int(dataset.offsets[k + 1])))
        self.of_index = {index: d for d in (0, 1) for index in self.slices[d]}
        self.rows_per_step = 2 * batch_size

    def _shuffled(self, domain: int, epoch: int) -> list[int]:
        order = torch.randperm(len(self.slices[domain]), generator=torch.Generator().manual_seed(
            self.seed * 1_000_003 + epoch * 2 + domain))
        return [self.slices[domain][i] for i in order.tolist()][self.rank::self.world_size]

    def batches(self, epoch: int) -> list[list[int]]:
        a, b = self._shuffled(0, epoch), self._shuffled(1, epoch)
        size = self.batch_size
        return [a[i:i + size] + b[i:i + size] for i in range(0, min(len(a), len(b)) - size + 1, size)]

    def masks(self, batch: list[int], scenario: Scenario, allowed: Sequence[Scenario], epoch: int, step: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(available, present): both the (B, 2) mask of the one contrast each row is seen in (the trainer zeroes
        the other); the scenario plays no part: both directions train on every batch."""
        rows = torch.zeros(len(batch), 2)
        for row, index in enumerate(batch):
            rows[row, self.of_index[index]] = 1.0
        return rows, rows

    def describe(self) -> dict:
        names = self.contrasts.names
        return {"pairing": "unpaired",
                "domains": {names[d]: sorted(s for s, v in self.domains.items() if v == d) for d in (0, 1)},
                "slices": {names[d]: len(self.slices[d]) for d in (0, 1)}}


SAMPLERS = {"paired": PairedSampler, "unpaired": UnpairedSampler}


def make_sampler(pairing: str, dataset, batch_size: int, seed: int, contrasts: ContrastSet, world_size: int = 1,
                 rank: int = 0, served: Sequence[Scenario] | None = None):
    """The sampler a family's `pairing` asks for."""
    return SAMPLERS[pairing](dataset, batch_size, seed, contrasts, world_size, rank, served)
