"""PyTorch's own distributed engine (DDP under torchrun): NCCL on GPUs, gloo on CPUs."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); otherwise one process."""
    import torch

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        from ..core.errors import InputError

        raise InputError("--device cuda was asked for but no CUDA GPU is visible to PyTorch; use --device cpu.")
    name = f"cuda:{local_rank}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if world_size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(rank, world_size, local_rank, name)


def shutdown_distributed() -> None:
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def ranks_agree(value: float, context: DistributedContext) -> bool:
    """True when every rank holds the same `value` (e.g. a checksum of the weights)."""
    if not context.enabled:
        return True
    import torch

    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    gathered = [torch.zeros_like(tensor) for _ in range(context.world_size)]
    torch.distributed.all_gather(gathered, tensor)
    return all(torch.equal(g, gathered[0]) for g in gathered)
