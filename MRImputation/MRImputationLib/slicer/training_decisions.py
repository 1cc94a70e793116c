"""What the training panel decides, without Slicer: the data it was given, the command it runs, and
the curves, status line and time left it shows while the child process trains.

The panel shows a folder's subjects and contrasts before anything starts (`summarize_data`), judges
its options with a reason a user can act on (`TrainingOptions.check`), runs `mrimpute train` with
them (`training_command`: the same command as the headless train.py), and turns the child's epoch
events into curve arrays (`TrainingCurves`) and a status line with the time left (`TrainingMonitor`).
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..core.contrasts import canonical_contrast, channel_order
from ..core.errors import InputError
from ..core.events import EpochEvent, ProgressEvent, format_duration
from ..training.run_folder import RunFolder
from .job import library_command

DEVICES = ("auto", "cuda", "cpu")
PRESETS = ("tiny", "seed-ixi", "mmgan-faithful")  # fastest first; see training_config.TRAIN_PRESETS
LOSS_COLUMNS = ("loss_g", "loss_d", "loss_l1", "loss_adv")
VALIDATION_COLUMNS = ("val_psnr", "val_ssim", "val_mae")
CURVE_COLUMNS = LOSS_COLUMNS + VALIDATION_COLUMNS
MAX_LISTED_SUBJECTS = 40
RECENT_EPOCHS = 5  # the time left follows the last few epochs (validation and caches change the pace)


@dataclass
class DataSummary:
    """The subjects of a data folder and the contrasts each has, as the panel lists them before training."""

    folder: Path
    preprocessed: bool
    subjects: dict[str, tuple[str, ...]]
    failed: list[str] = field(default_factory=list)  # subjects a preprocessed folder records as failed

    @property
    def contrasts(self) -> list[str]:
        return channel_order(c for names in self.subjects.values() for c in names)

    def counts(self) -> dict[str, int]:
        """How many subjects have each contrast."""
        return {c: sum(c in names for names in self.subjects.values()) for c in self.contrasts}

    @property
    def shared(self) -> list[str]:
        """The contrasts every subject has (what training uses when no contrast set is chosen)."""
        return [c for c, n in self.counts().items() if n == len(self.subjects)]

    def complete(self, contrasts: Sequence[str]) -> list[str]:
        """The subjects that have every one of `contrasts` (the ones training can use)."""
        wanted = {canonical_contrast(c) for c in contrasts}
        return sorted(s for s, names in self.subjects.items() if wanted <= set(names))

    def check(self, contrasts: Sequence[str] = ()) -> tuple[bool, str]:
        """Whether training can use this data with `contrasts` (default: the shared ones), and why not."""
        chosen = [canonical_contrast(c) for c in contrasts] or self.shared
        if len(chosen) < 2:
            return False, (f"Training needs at least two contrasts that the subjects share; {self.folder.name} has "
                           f"{self._listing()}. Tick two or more contrasts.")
        unknown = [c for c in chosen if c not in self.contrasts]
        if unknown:
            return False, f"No subject in {self.folder.name} has {', '.join(unknown)}."
        usable = self.complete(chosen)
        if len(usable) < 2:
            return False, (f"Only {len(usable)} subject(s) have all of {', '.join(chosen)}; training needs two or more "
                           "(one to train, one to test). Choose fewer contrasts or add subjects.")
        return True, ""

    def _listing(self) -> str:
        return ", ".join(f"{c} ({n} subject{'s' if n != 1 else ''})" for c, n in self.counts().items()) or "none"

    def describe(self, contrasts: Sequence[str] = ()) -> str:
        """One line: subjects, contrasts with counts, what training will use.

        >>> DataSummary(Path("ixi"), False, {"a": ("T1", "T2"), "b": ("T1",)}).describe()
        '2 subjects (raw: preprocessed into the run folder first); contrasts: T1 (2 subjects), T2 (1 subject).'
        """
        kind = "preprocessed" if self.preprocessed else "raw: preprocessed into the run folder first"
        line = (f"{len(self.subjects)} subject{'s' if len(self.subjects) != 1 else ''} ({kind}); "
                f"contrasts: {self._listing()}.")
        if self.failed:
            line += f" Left out (failed preprocessing): {', '.join(self.failed)}."
        chosen = [canonical_contrast(c) for c in contrasts] or self.shared
        if contrasts and len(chosen) >= 2:
            line += f" {len(self.complete(chosen))} have all of {', '.join(chosen)}."
        return line

    def to_html(self, contrasts: Sequence[str] = ()) -> str:
        """The summary line and a subject × contrast table (✓ / –), for the panel's text browser."""
        e = html.escape
        columns = self.contrasts
        head = "".join(f"<th>{e(c)}</th>" for c in columns)
        rows = []
        for name in sorted(self.subjects)[:MAX_LISTED_SUBJECTS]:
            have = set(self.subjects[name])
            cells = "".join(f"<td align='center'>{'✓' if c in have else '–'}</td>" for c in columns)
            rows.append(f"<tr><td>{e(name)}</td>{cells}</tr>")
        more = len(self.subjects) - MAX_LISTED_SUBJECTS
        if more > 0:
            rows.append(f"<tr><td colspan='{len(columns) + 1}'>… and {more} more</td></tr>")
        return (f"<p>{e(self.describe(contrasts))}</p><table cellspacing='3'><tr><th align='left'>subject</th>{head}</tr>"
                f"{''.join(rows)}</table>")


def summarize_data(folder: str | os.PathLike) -> DataSummary:
    """Subjects and contrasts of a raw folder (found by name) or of a `mrimpute preprocess` output (its manifest).

    InputError (naming the folder and what was looked for) when it holds no subject.
    """
    from ..preprocessing.manifest import MANIFEST_NAME, read_manifest

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder. Choose the folder that holds the subjects' images.")
    if (folder / MANIFEST_NAME).exists():
        records = read_manifest(folder)["subjects"]
        subjects = {r["subject"]: tuple(channel_order(r.get("outputs", {}))) for r in records if r.get("status") == "ok"}
        failed = sorted(r["subject"] for r in records if r.get("status") != "ok")
        if not subjects:
            raise InputError(f"{folder}: no subject was preprocessed successfully; see its manifest.json.")
        return DataSummary(folder, True, subjects, failed)
    from ..data.discovery import discover_subjects

    found = discover_subjects(folder)
    return DataSummary(folder, False, {s.subject: tuple(channel_order(s.files)) for s in found})


@dataclass
class TrainingOptions:
    """The one options type of a training job on the Slicer side: the panel's choices, each mapped
    to one option of `mrimpute train` by `arguments()` (the command reads them into its TrainConfig
    overrides and its steps after training, pipelines/after_training.py).

    >>> TrainingOptions("data", "run", preset="tiny", epochs=2).arguments()
    ['data', '--out', 'run', '--config', 'tiny', '--device', 'auto', '--epochs', '2', '--evaluate', '--export']
    """

    data: str
    out: str
    preset: str = "mmgan-faithful"
    contrasts: tuple[str, ...] = ()
    epochs: int | None = None  # None or 0: the preset's
    batch_size: int | None = None
    device: str = "auto"
    resume: bool = False
    evaluate: bool = True
    export: bool = True
    install: bool = False
    steps_per_epoch: int | None = None

    def check(self, summary: DataSummary | None = None) -> tuple[bool, str]:
        """(True, "") when training can start, else (False, a sentence saying what to change)."""
        data, out = str(self.data or "").strip(), str(self.out or "").strip()
        if not data or data == ".":
            return False, "Choose the data folder (raw subjects, or the output of `mrimpute preprocess`)."
        if not out or out == ".":
            return False, "Choose an output folder for the run (checkpoints, curves, evaluation and the model bundle)."
        if Path(out).resolve() == Path(data).resolve():
            return False, "The output folder is the data folder; choose a separate (empty) folder for the run."
        if self.preset not in PRESETS and not (self.preset.endswith(".json") and Path(self.preset).is_file()):
            return False, f"Preset {self.preset!r} is unknown; choose one of {', '.join(PRESETS)}."
        if self.device not in DEVICES:
            return False, f"Device {self.device!r}: choose one of {', '.join(DEVICES)}."
        for name, value in (("epochs", self.epochs), ("batch size", self.batch_size),
                            ("steps per epoch", self.steps_per_epoch)):
            if value is not None and value < 0:
                return False, f"The {name} must be positive (0 keeps the preset's)."
        has_run = RunFolder(out).config.exists()
        if self.resume and not has_run:
            return False, f"{out} holds no training run to resume; untick Resume to start a new run there."
        if not self.resume and has_run:
            return False, (f"{out} already holds a training run: tick Resume to continue it, or choose an empty "
                           "output folder for a new run.")
        if self.install and not self.export:
            return False, "Adding the model to MR Imputation needs the bundle: keep Export on."
        if summary is not None and not self.resume:
            return summary.check(self.contrasts)
        return True, ""

    def arguments(self, models_folder: str | os.PathLike | None = None) -> list[str]:
        """`mrimpute train`'s arguments (data first); `models_folder` is where --install puts the bundle."""
        args = [str(self.data), "--out", str(self.out), "--config", self.preset, "--device", self.device]
        if self.contrasts:
            args += ["--contrasts", ",".join(canonical_contrast(c) for c in self.contrasts)]
        for option, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size),
                              ("--steps-per-epoch", self.steps_per_epoch)):
            if value:
                args += [option, str(int(value))]
        if self.resume:
            args.append("--resume")
        args.append("--evaluate" if self.evaluate else "--no-evaluate")
        args.append("--export" if self.export else "--no-export")
        if self.install:
            args += ["--install", *(["--models-folder", str(models_folder)] if models_folder else [])]
        return args


def training_command(python: str | os.PathLike, options: TrainingOptions,
                     models_folder: str | os.PathLike | None = None) -> list[str]:
    """The child process: `mrimpute train` with the options, as the headless train.py runs it.

    >>> training_command("python", TrainingOptions("d", "r"))[:6]
    ['python', '-m', 'MRImputationLib', 'train', 'd', '--out']
    """
    return library_command(python, "train", *options.arguments(models_folder))


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
        path = RunFolder(run).history
        if not path.is_file():
            return cls()
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            if isinstance(record, dict) and isinstance(record.get("epoch"), int):
                records.append(record)
        return cls(records)

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
