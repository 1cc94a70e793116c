"""Progress reporting: a tqdm bar on a terminal, or one JSON object per line for the Slicer module.

Events (with `--progress json`, on stdout):
  {"event": "progress", "stage": ..., "fraction": 0..1, "message": ..., "elapsed_s": ..., "eta_s": ...}
  {"event": "log", "message": ...}   a line for the user (warnings, where results went)
  {"event": "epoch", "epoch": ..., "loss_g": ..., "loss_d": ..., "val_psnr": ..., ...}   training curves
  {"event": "done", ...}          once, at the end of a successful run
  {"event": "error", "message": ..., "exit_code": ...}
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable, TextIO

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

    def _emit(self, event: dict) -> None:
        stream = self.stream or sys.stdout
        stream.write(json.dumps(event) + "\n")
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
            self._emit(
                {
                    "event": "progress",
                    "stage": stage,
                    "fraction": round(fraction, 4),
                    "message": message,
                    "elapsed_s": round(now - self._start, 2),
                    "eta_s": None if eta is None else round(eta, 1),
                }
            )
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
            self._emit({"event": "log", "message": message})
        elif self._bar is not None:
            self._bar.write(message, file=self.stream or sys.stderr)
        else:
            print(message, file=self.stream or sys.stderr, flush=True)

    def event(self, name: str, **data) -> None:
        """A structured event (e.g. "epoch" with its losses) for programs reading --progress json."""
        if self.mode == "json":
            self._emit({"event": name, **data})

    def done(self, **info) -> None:
        self._close_bar()
        if self.mode == "json":
            self._emit({"event": "done", **info})

    def error(self, message: str, exit_code: int) -> None:
        self._close_bar()
        if self.mode == "json":
            self._emit({"event": "error", "message": message, "exit_code": exit_code})
        else:
            print(f"error: {message}", file=sys.stderr, flush=True)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def null_progress(fraction: float, message: str = "") -> None:
    """A callback that reports nowhere."""
