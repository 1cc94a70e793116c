"""A function run on a worker thread, with progress the GUI thread can read (downloads, imports).

The GUI polls `task.progress` and `task.finished` from a timer; the function never touches Qt.

>>> task = BackgroundTask(lambda report: report(1.0, "done") or 42).start()
>>> task.wait().result, task.progress
(42, (1.0, 'done'))
"""

from __future__ import annotations

import threading
from typing import Callable


class BackgroundTask:
    """Runs `work(report)` on a daemon thread; `report(fraction, message)` updates `progress`."""

    def __init__(self, work: Callable[[Callable[[float, str], None]], object], name: str = "MRImputation task") -> None:
        self.work = work
        self.progress: tuple[float, str] = (0.0, "starting")
        self.result = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def _report(self, fraction: float, message: str = "") -> None:
        self.progress = (float(fraction), message)  # one tuple assignment: the reader never sees half an update

    def _run(self) -> None:
        try:
            self.result = self.work(self._report)
        except BaseException as error:  # noqa: BLE001 - handed to the GUI thread, which shows it
            self.error = error

    def start(self) -> "BackgroundTask":
        self._thread.start()
        return self

    @property
    def finished(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> "BackgroundTask":
        self._thread.join(timeout)
        return self
