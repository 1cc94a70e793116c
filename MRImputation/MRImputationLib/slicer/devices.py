"""Which compute devices PyTorch sees, asked of a child process, and the panels' line saying so.

Importing torch takes seconds and is never done in Slicer's own process, so both panels start a
small child (a Job like any other) when they open and show `describe_devices` of its answer.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Mapping

from ..core.events import EVENT_KEY, EventKind
from .job import Job, python_executable, start_job

# Printed by the child as the contract's done event; the child needs nothing but torch (if any).
DEVICE_PROBE = (
    "import json\n"
    "def done(**info):\n"
    f"    print(json.dumps({{{EVENT_KEY!r}: {EventKind.DONE.value!r}, **info}}))\n"
    "try:\n"
    "    import torch\n"
    "except ImportError:\n"
    "    done(torch=None, cuda=False)\n"
    "else:\n"
    "    info = {'torch': torch.__version__, 'cuda': torch.cuda.is_available()}\n"
    "    if info['cuda']:\n"
    "        p = torch.cuda.get_device_properties(0)\n"
    "        info.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1))\n"
    "    done(**info)\n"
)
SMALL_GPU_GB = 6.0


def device_probe_command(python: str | os.PathLike = sys.executable) -> list[str]:
    """A child that prints what PyTorch sees (run it in the background: importing torch takes seconds)."""
    return [str(python), "-c", DEVICE_PROBE]


def start_device_probe(on_found: Callable[[dict], None]) -> Job:
    """Start the probe; `on_found(info)` gets {"torch", "cuda", "gpu", "gpu_memory_gb"} when it answered."""
    return start_job(device_probe_command(python_executable()),  # nothing to save: stopped at once
                     on_finished=lambda job: on_found(job.info) if job.ok else None, grace_s=0.0)


def describe_devices(info: Mapping | None) -> str:
    """The device line of the panel, from the probe's done event.

    >>> describe_devices({"torch": "2.3.0", "cuda": True, "gpu": "RTX A4000", "gpu_memory_gb": 16.0})
    'CUDA GPU: RTX A4000 (16.0 GB), PyTorch 2.3.0; auto uses the GPU.'
    >>> describe_devices({"torch": "2.3.0+cpu", "cuda": False})
    'No CUDA GPU visible to PyTorch 2.3.0+cpu: auto uses the CPU (slower).'
    """
    if info is None:
        return "Detecting devices…"
    if not info.get("torch"):
        return "PyTorch is not installed: it is installed through the PyTorch extension on first use."
    if not info.get("cuda"):
        return f"No CUDA GPU visible to PyTorch {info['torch']}: auto uses the CPU (slower)."
    memory = info.get("gpu_memory_gb")
    line = f"CUDA GPU: {info.get('gpu', '?')} ({memory} GB), PyTorch {info['torch']}; auto uses the GPU."
    if memory is not None and memory < SMALL_GPU_GB:
        line += f" Less than {SMALL_GPU_GB:g} GB of GPU memory: lower the batch or use the CPU if it runs out."
    return line
