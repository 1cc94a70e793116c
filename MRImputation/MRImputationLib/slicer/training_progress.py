"""What the training panel shows while the child trains: per-epoch curves and a status line with the time left.

`TrainingCurves` turns the child's epoch events (and a resumed run's history.jsonl) into columns for
the plots (training_plots.py); `TrainingMonitor` follows the events into the status line, e.g.
'epoch 3/6 · G 0.412 · val PSNR 24.10 dB · about 1 min 05 s of training left'. No Qt, no Slicer.
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable, Sequence

from ..core.events import EpochEvent, ProgressEvent, format_duration
from ..training.run_folder import RunFolder

LOSS_COLUMNS = ("loss_g", "loss_d", "loss_l1", "loss_adv")
VALIDATION_COLUMNS = ("val_psnr", "val_ssim", "val_mae")
CURVE_COLUMNS = LOSS_COLUMNS + VALIDATION_COLUMNS
RECENT_EPOCHS = 5  # the time left follows the last few epochs (validation and caches change the pace)


class TrainingCurves:
    """Per-epoch records (losses, validation metrics) as columns for plotting; a resumed run continues them.

    >>> curves = TrainingCurves()
    >>> curves.add({"epoch": 1, "loss_g": 0.5}); curves.add({"epoch": 2, "loss_g": 0.4, "val_psnr": 21.0})
    >>> curves.column("loss_g"), curves.column("val_psnr")[1]
    ([0.5, 0.4], 21.0)
    """

    def __init__(self, records: Sequence[dict] = ()) -> None:
        self.records: list[dict] = []
        for record in records:
            self.add(record)

    @classmethod
    def from_history(cls, run: str | os.PathLike) -> "TrainingCurves":
        """The curves so far of a run folder (its history.jsonl), e.g. before resuming it."""
        return cls([r for r in RunFolder(run).read_history() if isinstance(r.get("epoch"), int)])

    def add(self, record: dict) -> None:
        """Add an epoch; an epoch seen before (a run resumed from an earlier checkpoint) replaces the later ones."""
        epoch = int(record["epoch"])
        self.records = [r for r in self.records if r["epoch"] < epoch] + [dict(record)]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def epochs(self) -> list[int]:
        return [r["epoch"] for r in self.records]

    @property
    def latest(self) -> dict | None:
        return self.records[-1] if self.records else None

    def column(self, name: str) -> list[float]:
        """One value per epoch; NaN where the epoch has none (e.g. validation every few epochs)."""
        values = []
        for record in self.records:
            value = record.get(name)
            values.append(float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan)
        return values

    def columns(self) -> dict[str, list[float]]:
        """"epoch" and every curve column, equally long."""
        return {"epoch": [float(e) for e in self.epochs], **{name: self.column(name) for name in CURVE_COLUMNS}}


class TrainingMonitor:
    """Follows a training child's events: stage, epoch, curves, and an estimate of the time left.

    `clock` is injectable for tests; the time left comes from the pace of the last epochs (wall
    time between epoch events, validation included), before the first epoch from the child's own
    estimate for its current stage.
    """

    def __init__(self, epochs: int | None = None, curves: TrainingCurves | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.epochs = epochs
        self.curves = curves or TrainingCurves()
        self.clock = clock
        self.started = clock()
        self.stage = ""
        self.last_progress: ProgressEvent | None = None
        self._train_started: float | None = None
        self._arrivals: list[float] = []

    def on_progress(self, event: ProgressEvent) -> None:
        self.stage, self.last_progress = event.stage, event
        if event.stage == "train" and self._train_started is None:
            self._train_started = self.clock()

    def on_epoch(self, event: EpochEvent) -> None:
        now = self.clock()
        if self._train_started is None:
            self._train_started = now
        self.curves.add(event.record)
        self._arrivals.append(now)
        if event.epochs is not None:
            self.epochs = event.epochs

    def epoch_seconds(self) -> float | None:
        """Wall seconds per epoch, over the last few epochs of this session."""
        if not self._arrivals or self._train_started is None:
            return None
        times = [self._train_started, *self._arrivals][-(RECENT_EPOCHS + 1):]
        return (times[-1] - times[0]) / (len(times) - 1)

    def time_left(self) -> float | None:
        """Seconds until training ends (evaluation and export not included), or None before any estimate."""
        latest = self.curves.latest
        if self.stage not in ("", "train") and self.last_progress is not None:
            return self.last_progress.eta_s
        per_epoch = self.epoch_seconds()
        if per_epoch is not None and latest is not None and self.epochs:
            return max(self.epochs - latest["epoch"], 0) * per_epoch
        return self.last_progress.eta_s if self.last_progress is not None else None

    def status(self) -> str:
        """'epoch 3/6 · G 0.412 · D 0.633 · val PSNR 24.10 dB · SSIM 0.812 · about 1 min 05 s of training left'."""
        parts = []
        latest = self.curves.latest
        if latest is not None:
            parts.append(f"epoch {latest['epoch']}/{self.epochs or '?'}")
            for key, label in (("loss_g", "G"), ("loss_d", "D"), ("loss_l1", "L1")):
                if isinstance(latest.get(key), (int, float)):
                    parts.append(f"{label} {latest[key]:.3f}")
            if isinstance(latest.get("val_psnr"), (int, float)):
                parts.append(f"val PSNR {latest['val_psnr']:.2f} dB")
            if isinstance(latest.get("val_ssim"), (int, float)):
                parts.append(f"SSIM {latest['val_ssim']:.3f}")
        training = self.stage in ("", "train")
        if not training:
            done = f" {self.last_progress.fraction:.0%}" if self.last_progress is not None else ""
            parts.append(f"{self.stage}{done}")
        left = self.time_left()
        if left is not None:
            parts.append(f"about {format_duration(left)} {'of training ' if training else ''}left")
        elif not parts:
            parts.append(f"starting ({format_duration(self.clock() - self.started)})")
        return " · ".join(parts)
