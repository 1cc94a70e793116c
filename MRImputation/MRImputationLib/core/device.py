"""What this machine offers to PyTorch: the device, the precision it runs fast, and how many threads.

Used by imputation (`pipelines/impute.py`) and training (`training/trainer.py`), so both decide the
same way:

- `cpu_has_native_bf16()`: whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16
  flags in /proc/cpuinfo, read at run time); False where that cannot be told (no /proc, other OS).
- `pick_device`, `pick_precision`: imputation's "auto" choices.
- `training_precision`: a TrainConfig.mixed_precision setting ("auto", "off", "bf16") on a device.
- `adaptive_threads`, `training_threads`: threads that do not collapse when other processes run.
  Measured on a 2-core machine: a 2-thread training fell from 17 to 2-5 slices/s while one other
  process ran, a 1-thread one was nearly unaffected; so by default a run takes only the cores that
  are not already busy (the 1-minute load average).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .errors import InputError

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")
TRAINING_PRECISIONS = ("auto", "off", "bf16")


def flags_have_native_bf16(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text lists a native bfloat16 instruction set on its `flags` lines.

    >>> flags_have_native_bf16("flags\\t: fpu sse avx512f avx512_bf16 amx_tile")
    True
    >>> flags_have_native_bf16("flags\\t: fpu sse avx2"), flags_have_native_bf16("")
    (False, False)
    """
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features") and any(f in value.split() for f in BF16_CPU_FLAGS):
            return True
    return False


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (read at run time); False where unknown."""
    try:
        return flags_have_native_bf16(CPUINFO.read_text(errors="replace"))
    except OSError:
        return False


def pick_device(requested: str, progress=None) -> str:
    """The device to run on, "cpu" or "cuda", for a requested "auto", "cpu" or "cuda".

    InputError when CUDA is asked for and PyTorch sees none; "auto" without a GPU says so on `progress`.
    """
    import torch

    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise InputError("--device cuda was asked for but PyTorch sees no CUDA GPU (a CPU-only torch build, or no "
                         "driver); use --device cpu or auto.")
    if progress is not None:
        progress.log("no CUDA GPU visible to PyTorch: running on the CPU")
    return "cpu"


def pick_precision(requested: str, device: str) -> str:
    """Inference precision: the requested one, or for "auto" bf16 where the hardware has it (fp16 on an
    older GPU, fp32 on a CPU without native bf16)."""
    if requested != "auto":
        return requested
    import torch

    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def training_precision(choice: str, device_type: str, native_bf16: bool | None = None) -> str:
    """What a TrainConfig.mixed_precision setting means on `device_type`: "bf16" (autocast) or "fp32".

    "auto": bf16 on CUDA, and on a CPU with native bf16 (`native_bf16`, read from the CPU if None);
    "off": fp32; "bf16": bf16 anywhere (slow, emulated, on a CPU without it).

    >>> training_precision("auto", "cuda"), training_precision("auto", "cpu", native_bf16=False)
    ('bf16', 'fp32')
    >>> training_precision("auto", "cpu", native_bf16=True), training_precision("off", "cuda")
    ('bf16', 'fp32')
    """
    if choice not in TRAINING_PRECISIONS:
        raise InputError(f"mixed_precision {choice!r}: training supports {', '.join(TRAINING_PRECISIONS)} "
                         "(bf16 needs no loss scaling); set one of those in the configuration.")
    if choice == "off":
        return "fp32"
    if choice == "bf16" or device_type == "cuda":
        return "bf16"
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    return "bf16" if native else "fp32"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def adaptive_threads(cores: int, load: float | None, limit: int | None = None) -> int:
    """Threads for a run: the cores not already busy per the 1-minute `load` average (rounded),
    at least 1, at most `cores`, and at most `limit` (e.g. OMP_NUM_THREADS) when given.

    >>> adaptive_threads(2, 1.1), adaptive_threads(2, 0.2), adaptive_threads(8, 2.6)
    (1, 2, 5)
    >>> adaptive_threads(4, 9.0), adaptive_threads(4, None), adaptive_threads(16, 0.0, limit=1)
    (1, 4, 1)
    """
    free = cores if load is None or not math.isfinite(load) else math.floor(cores - max(load, 0.0) + 0.5)
    if limit is not None and limit > 0:
        free = min(free, limit)
    return max(1, min(cores, free))


def _omp_limit() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def training_threads(requested: int | None) -> tuple[int, str]:
    """(threads, why): `requested` if given, else `adaptive_threads` on this machine now.

    The adaptive figure respects OMP_NUM_THREADS when it is set (torchrun sets it to 1 for each of
    several processes), so processes sharing a machine do not oversubscribe it.
    """
    if requested is not None:
        if int(requested) < 1:
            raise InputError(f"--threads {requested}: give at least 1 (or leave it out for the adaptive choice).")
        return int(requested), "as asked"
    cores = usable_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - Windows
        load = None
    limit = _omp_limit()
    threads = adaptive_threads(cores, load, limit)
    load_text = "unknown" if load is None else f"{load:.1f}"
    why = f"adaptive: {cores} core(s), 1-minute load {load_text}" + (f", OMP_NUM_THREADS={limit}" if limit else "")
    return threads, why
