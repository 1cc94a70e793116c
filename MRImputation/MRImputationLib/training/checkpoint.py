"""Training checkpoints: everything needed to continue exactly, written atomically.

Only tensors, numbers, strings, lists and dicts are stored, so loading uses
`torch.load(weights_only=True)` and never runs code from the file.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_file
from ..core.disk import explain_disk_full
from ..core.errors import InputError


def capture_rng_state() -> dict:
    import torch

    np_state = np.random.get_state()
    state = {
        "python": _to_lists(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    import torch

    random.setstate(_to_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value


def state_bytes(value) -> int:
    """The bytes of every tensor and array in a (nested) state: about the size its checkpoint file needs."""
    if isinstance(value, dict):
        return sum(state_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(state_bytes(v) for v in value)
    if hasattr(value, "element_size") and hasattr(value, "numel"):  # a torch.Tensor
        return value.element_size() * value.numel()
    return getattr(value, "nbytes", 64)


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write `state` atomically; a full disk is a DiskFull error saying how much is needed (the previous
    checkpoint, if any, stays as it was, and the temporary is removed)."""
    import torch

    needed = state_bytes(state) + (1 << 20)
    with explain_disk_full(path, needed, "continue with --resume once there is room"):
        with atomic_file(path) as tmp:
            torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    import torch

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no checkpoint to resume from; start without --resume.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure here means an unusable file
        raise InputError(f"{path}: not a readable MRImputation checkpoint ({error}).") from None
