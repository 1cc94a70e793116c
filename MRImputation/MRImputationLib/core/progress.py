"""Progress reporting: a tqdm bar on a terminal, or one JSON object per line for the Slicer module.

With `--progress json` every report is one event of core/events.py (progress, log, epoch, done,
error) on stdout, as `EventKind` names it; with "bar" or "none" only progress and log lines show.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable, Mapping, TextIO

from .events import DoneEvent, EpochEvent, ErrorEvent, Event, LogEvent, ProgressEvent

ProgressCallback = Callable[[float, str], None]


class Progress:
    """Reports stages and fractions; `mode` is "bar", "json" or "none".

    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress("json", stream=out)
    >>> p.update("register", 0.5, "T2 onto PD")
    >>> json.loads(out.getvalue())["fraction"]
    0.5
    """

    def __init__(self, mode: str = "bar", stream: TextIO | None = None) -> None:
        if mode not in ("bar", "json", "none"):
            raise ValueError(f"progress mode {mode!r}: use bar, json or none")
        self.mode = mode
        self.stream = stream
        self._bar = None
        self._stage: str | None = None
        self._stage_start = time.monotonic()
        self._start = time.monotonic()

    def _emit(self, event: Event) -> None:
        stream = self.stream or sys.stdout
        stream.write(json.dumps(event.to_dict()) + "\n")
        stream.flush()

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        """Report that `stage` is `fraction` (0..1) done."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        now = time.monotonic()
        if stage != self._stage:
            self._stage, self._stage_start = stage, now
            self._close_bar()
        if self.mode == "json":
            elapsed = now - self._stage_start
            eta = elapsed * (1 - fraction) / fraction if fraction > 0.01 else None
            self._emit(ProgressEvent(stage, round(fraction, 4), message, round(now - self._start, 2),
                                     None if eta is None else round(eta, 1)))
        elif self.mode == "bar":
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=1000, desc=stage, file=self.stream or sys.stderr, leave=True,
                                 bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}] {postfix}")
            self._bar.n = int(fraction * 1000)
            self._bar.set_postfix_str(message, refresh=False)
            self._bar.refresh()

    def callback(self, stage: str, start: float = 0.0, end: float = 1.0) -> ProgressCallback:
        """A `(fraction, message)` callback for a sub-task filling [start, end] of `stage`."""

        def report(fraction: float, message: str = "") -> None:
            self.update(stage, start + (end - start) * fraction, message)

        return report

    def log(self, message: str) -> None:
        """A line for the user that is not progress (a warning, where results went)."""
        if self.mode == "json":
            self._emit(LogEvent(message))
        elif self._bar is not None:
            self._bar.write(message, file=self.stream or sys.stderr)
        else:
            print(message, file=self.stream or sys.stderr, flush=True)

    def epoch(self, record: Mapping, epochs: int | None = None) -> None:
        """A finished training epoch (its history record: losses, validation metrics) for the curves."""
        if self.mode == "json":
            self._emit(EpochEvent.from_record(record, epochs))

    def done(self, **info) -> None:
        self._close_bar()
        if self.mode == "json":
            self._emit(DoneEvent(info))

    def error(self, message: str, exit_code: int) -> None:
        self._close_bar()
        if self.mode == "json":
            self._emit(ErrorEvent(message, exit_code))
        else:
            print(f"error: {message}", file=sys.stderr, flush=True)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def null_progress(fraction: float, message: str = "") -> None:
    """A callback that reports nowhere."""
