"""core/device.py: native bf16 read from the CPU flags, precision choices, and threads that leave busy cores alone."""

from __future__ import annotations

import pytest
import torch

from MRImputationLib.core import device
from MRImputationLib.core.errors import InputError


def test_cpu_flags_are_read_at_run_time_and_unknown_means_no(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    monkeypatch.setattr(device, "CPUINFO", cpuinfo)
    assert device.cpu_has_native_bf16() is True
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\nmodel name\t: avx512_bf16 in a name is no flag\n")
    assert device.cpu_has_native_bf16() is False
    monkeypatch.setattr(device, "CPUINFO", tmp_path / "absent")  # no /proc (macOS, Windows): unknown -> False
    assert device.cpu_has_native_bf16() is False


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_mixed_precision_is_bf16_on_a_cpu_only_where_it_is_native(monkeypatch, native, expected):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    assert device.training_precision("auto", "cpu") == expected
    assert device.training_precision("auto", "cuda") == "bf16"
    assert device.training_precision("off", "cpu") == device.training_precision("off", "cuda") == "fp32"
    assert device.training_precision("bf16", "cpu") == "bf16"
    assert device.pick_precision("auto", "cpu") == expected and device.pick_precision("fp16", "cpu") == "fp16"
    with pytest.raises(InputError, match="mixed_precision 'fp16'"):
        device.training_precision("fp16", "cpu")


def test_adaptive_threads_take_the_cores_not_already_busy(monkeypatch):
    monkeypatch.setattr(device, "usable_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device.os, "getloadavg", lambda: (1.05, 0.5, 0.2), raising=False)
    threads, why = device.training_threads(None)
    assert threads == 1 and "2 core(s)" in why and "1.1" in why
    monkeypatch.setattr(device.os, "getloadavg", lambda: (0.1, 0.5, 0.2), raising=False)
    assert device.training_threads(None)[0] == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun's setting for each of several processes
    assert device.training_threads(None) == (1, "adaptive: 2 core(s), 1-minute load 0.1, OMP_NUM_THREADS=1")
    assert device.training_threads(3) == (3, "as asked")
    with pytest.raises(InputError, match="--threads 0"):
        device.training_threads(0)


def test_the_trainer_autocasts_as_the_precision_says(monkeypatch, tmp_path):
    from MRImputationLib.core.contrasts import IXI
    from MRImputationLib.models.mmgan.config import preset
    from MRImputationLib.training.config import train_preset
    from MRImputationLib.training.distributed import DistributedContext
    from MRImputationLib.training.trainer import Trainer

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    assert train_preset("tiny").mixed_precision == "off"  # tests and the demo: fp32 whatever the CPU
    trainer = Trainer(train_preset("tiny", mixed_precision="auto"), preset("tiny", 3), IXI, [], tmp_path,
                      DistributedContext())
    assert trainer.precision == "bf16" and trainer.training_step.execution.autocast_dtype == torch.bfloat16
    trainer = Trainer(train_preset("tiny"), preset("tiny", 3), IXI, [], tmp_path, DistributedContext())
    assert trainer.precision == "fp32" and trainer.training_step.execution.autocast_dtype is None
