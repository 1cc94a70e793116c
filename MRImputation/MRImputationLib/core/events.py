"""The progress events of the process contract: their names, their fields, and their JSON form.

Every long command prints, with `--progress json`, one JSON object per line on stdout; its "event"
key is an `EventKind`. `core.progress.Progress` writes them (`to_dict`), the Slicer module's child
process reader (`slicer.process.parse_event`) reads them back (`event_from_dict`), so both sides
share this one definition:

  progress  {"event": "progress", "stage": ..., "fraction": 0..1, "message": ..., "elapsed_s": ..., "eta_s": ...}
  log       {"event": "log", "message": ...}   a line for the user (a warning, where results went)
  epoch     {"event": "epoch", "epoch": ..., "epochs": ..., "loss_g": ..., "val_psnr": ..., ...}   training curves
  done      {"event": "done", ...}             once, at the end of a successful run, with what it made
  error     {"event": "error", "message": ..., "exit_code": ...}

>>> event_from_dict(EpochEvent(2, 6, {"loss_g": 0.4}).to_dict())
EpochEvent(epoch=2, epochs=6, values={'loss_g': 0.4})
>>> event_from_dict({"event": "unknown"}) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping, Union

from .errors import EXIT_FAILED

EVENT_KEY = "event"


class EventKind(str, Enum):
    """The value of a JSON line's "event" key."""

    PROGRESS = "progress"
    LOG = "log"
    EPOCH = "epoch"
    DONE = "done"
    ERROR = "error"


def format_duration(seconds: float) -> str:
    """'45 s', '3 min 20 s', '1 h 05 min'.

    >>> format_duration(44.6), format_duration(200), format_duration(3900)
    ('45 s', '3 min 20 s', '1 h 05 min')
    """
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ProgressEvent:
    """`stage` is `fraction` (0..1) done; `eta_s` is the child's estimate of the stage's time left."""

    stage: str
    fraction: float
    message: str = ""
    elapsed_s: float | None = None
    eta_s: float | None = None
    kind = EventKind.PROGRESS

    def describe(self) -> str:
        """One line for a status label, e.g. 'synthesize 40% (about 12 s left): T1, T2 -> PD'."""
        text = f"{self.stage} {self.fraction:.0%}"
        if self.eta_s is not None:
            text += f" (about {format_duration(self.eta_s)} left)"
        return f"{text}: {self.message}" if self.message else text

    def to_dict(self) -> dict:
        return {EVENT_KEY: self.kind.value, "stage": self.stage, "fraction": self.fraction, "message": self.message,
                "elapsed_s": self.elapsed_s, "eta_s": self.eta_s}

    @classmethod
    def from_dict(cls, data: Mapping) -> "ProgressEvent":
        return cls(str(data.get("stage", "")), _number(data.get("fraction")) or 0.0, str(data.get("message") or ""),
                   _number(data.get("elapsed_s")), _number(data.get("eta_s")))


@dataclass(frozen=True)
class LogEvent:
    """A line for the user that is not progress; `stream` is where a reader got it ("stdout" or "stderr")."""

    message: str
    stream: str = "stdout"
    kind = EventKind.LOG

    def to_dict(self) -> dict:
        return {EVENT_KEY: self.kind.value, "message": self.message}

    @classmethod
    def from_dict(cls, data: Mapping) -> "LogEvent":
        return cls(str(data.get("message", "")))


@dataclass(frozen=True)
class EpochEvent:
    """One finished training epoch: its number, the run's planned `epochs`, and its `values`.

    `values` are the epoch's mean losses (loss_g, loss_d, ...), its validation metrics (val_psnr,
    val_ssim, val_mae) when it was validated, and its pace (seconds, slices_per_s, lr): the keys
    depend on the model family's losses, so they travel as a mapping, not as fields.

    >>> EpochEvent.from_record({"epoch": 3, "loss_g": 0.5}, epochs=10).record
    {'epoch': 3, 'epochs': 10, 'loss_g': 0.5}
    """

    epoch: int
    epochs: int | None = None
    values: dict = field(default_factory=dict)
    kind = EventKind.EPOCH

    @classmethod
    def from_record(cls, record: Mapping, epochs: int | None = None) -> "EpochEvent":
        """From a history.jsonl record ({"epoch": ..., losses..., metrics...})."""
        return cls(int(record["epoch"]), epochs, {k: v for k, v in record.items() if k not in ("epoch", "epochs")})

    @property
    def record(self) -> dict:
        """The epoch as one flat dict, as the run's history.jsonl and the curves hold it."""
        return {"epoch": self.epoch, **({"epochs": self.epochs} if self.epochs is not None else {}), **self.values}

    def to_dict(self) -> dict:
        return {EVENT_KEY: self.kind.value, **self.record}

    @classmethod
    def from_dict(cls, data: Mapping) -> "EpochEvent | None":
        epoch, epochs = data.get("epoch"), data.get("epochs")
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            return None
        return cls(epoch, epochs if isinstance(epochs, int) else None,
                   {k: v for k, v in data.items() if k not in (EVENT_KEY, "epoch", "epochs")})


@dataclass(frozen=True)
class DoneEvent:
    """The run finished successfully; `info` is what the command reported (paths, timings...)."""

    info: dict = field(default_factory=dict)
    kind = EventKind.DONE

    def to_dict(self) -> dict:
        return {EVENT_KEY: self.kind.value, **self.info}

    @classmethod
    def from_dict(cls, data: Mapping) -> "DoneEvent":
        return cls({k: v for k, v in data.items() if k != EVENT_KEY})


@dataclass(frozen=True)
class ErrorEvent:
    """The run failed; `message` says why and what to do, `exit_code` follows core/errors.py."""

    message: str
    exit_code: int = EXIT_FAILED
    kind = EventKind.ERROR

    def to_dict(self) -> dict:
        return {EVENT_KEY: self.kind.value, "message": self.message, "exit_code": self.exit_code}

    @classmethod
    def from_dict(cls, data: Mapping) -> "ErrorEvent":
        code = data.get("exit_code")
        return cls(str(data.get("message", "")), code if isinstance(code, int) else EXIT_FAILED)


Event = Union[ProgressEvent, LogEvent, EpochEvent, DoneEvent, ErrorEvent]
EVENT_TYPES = {cls.kind: cls for cls in (ProgressEvent, LogEvent, EpochEvent, DoneEvent, ErrorEvent)}


def event_from_dict(data: Mapping) -> Event | None:
    """The typed event of one decoded JSON line; None when it is not a well-formed contract event."""
    try:
        kind = EventKind(data.get(EVENT_KEY))
    except (ValueError, TypeError):
        return None
    return EVENT_TYPES[kind].from_dict(data)
