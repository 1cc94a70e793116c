"""What the training panel decides, without Slicer: the data it was given, the command it runs.

The panel shows a folder's subjects and contrasts before anything starts (`summarize_data`, bounded:
typing `/` never walks the disk), reads the data-folder field only once typing pauses (`FolderInput`),
suggests an output folder beside the data until the user picks one (`output_suggestion`), judges its
options with a reason a user can act on (`TrainingOptions.check`) and runs `mrimpute train` with them
(`training_command`: the same command as the headless train.py). What it shows while the child
trains (curves, status line, time left) is in training_progress.py.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..core.contrasts import canonical_contrast, channel_order
from ..core.errors import InputError
from ..training.run_folder import RunFolder
from .job import library_command

DEVICES = ("auto", "cuda", "cpu")
# Fastest first; see training/config.py TRAIN_PRESETS. The CycleGAN ones need two contrasts (unpaired T1 <-> FLAIR,
# say); the VAE-UNet ones synthesize FLAIR from the others unless a .json configuration names another target.
PRESETS = ("tiny", "cyclegan-tiny", "vae-unet-tiny", "seed-ixi", "vae-unet", "mmgan-faithful", "cyclegan-unet",
           "cyclegan-resnet")
MAX_LISTED_SUBJECTS = 40
DEBOUNCE_MS = 700  # the data-folder field is read once typing pauses this long (at once on Enter or focus out)
# A data folder is read this far at most (IXI: ~1,800 files; BraTS 2023 training data: ~8,000 entries).
MAX_SCAN_ENTRIES = 20_000
MAX_SCAN_DEPTH = 5


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


def summarize_data(folder: str | os.PathLike, max_entries: int = MAX_SCAN_ENTRIES,
                   max_depth: int = MAX_SCAN_DEPTH) -> DataSummary:
    """Subjects and contrasts of a raw folder (found by name) or of a `mrimpute preprocess` output (its manifest).

    InputError (naming the folder and what was looked for) when it holds no subject, and when a raw
    folder is larger or deeper than a folder of subjects is (`check_scan_bounds`): nothing is walked
    beyond the bounds.
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

    check_scan_bounds(folder, max_entries, max_depth)
    found = discover_subjects(folder)
    return DataSummary(folder, False, {s.subject: tuple(channel_order(s.files)) for s in found})


def check_scan_bounds(folder: str | os.PathLike, max_entries: int = MAX_SCAN_ENTRIES,
                      max_depth: int = MAX_SCAN_DEPTH) -> int:
    """Walk `folder` as subject discovery does (hidden and skipped folders left out, links to folders followed),
    but stop at `max_entries` files and folders or `max_depth` levels: InputError saying where it stopped
    and what to choose instead. Returns the number of entries seen.
    """
    from ..data.discovery import SKIPPED_FOLDERS

    folder = Path(folder)
    seen, stack = 0, [(folder, 0)]
    while stack:
        current, depth = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    seen += 1
                    if seen > max_entries:
                        raise InputError(f"{folder}: stopped reading after {max_entries} files and folders: this is "
                                         "more than a folder of subjects (a home folder, a disk?). Choose the folder "
                                         "that holds the subjects' images, or the output of `mrimpute preprocess`.")
                    if entry.is_dir() and entry.name not in SKIPPED_FOLDERS:  # links too, as discovery
                        if depth + 1 > max_depth:
                            raise InputError(f"{folder}: has folders more than {max_depth} levels deep (e.g. "
                                             f"{Path(entry.path).relative_to(folder)}); choose the folder that holds "
                                             "the subjects (their images, or one folder per subject).")
                        stack.append((Path(entry.path), depth + 1))
        except (PermissionError, FileNotFoundError, NotADirectoryError):
            continue  # as os.walk does: what cannot be listed is left out
    return seen


class FolderInput:
    """The data-folder field while the user types: which path to read, once, and whose answer still counts.

    Each change of the text is `typed(text)`; the panel restarts a single-shot timer of `DEBOUNCE_MS`
    and, when it fires or editing is finished (Enter, focus out), reads `settle()`: the path to scan
    now ("" when the field was cleared), or None when nothing changed since the last one. A scan's
    answer is shown only while `wanted(path)`: a later settled path makes an older answer stale.

    >>> field = FolderInput()
    >>> for text in ("/", "/d", "/data"):
    ...     field.typed(text)
    >>> field.settle(), field.settle(), field.wanted("/"), field.wanted("/data")
    ('/data', None, False, True)
    """

    def __init__(self, current: str = "") -> None:
        self.current = str(current or "").strip()
        self.pending: str | None = None

    def typed(self, text: str) -> None:
        self.pending = str(text or "").strip()

    @property
    def waiting(self) -> bool:
        """True while typed text has not been settled yet."""
        return self.pending is not None

    def settle(self) -> str | None:
        if self.pending is None:
            return None
        path, self.pending = self.pending, None
        if path == self.current:
            return None
        self.current = path
        return path

    def wanted(self, path: str) -> bool:
        return path == self.current


def output_suggestion(data: str, output: str, suggested: str) -> str | None:
    """The output folder to show for the data folder `data`: '<data>-training' beside it, as long as the
    output field holds nothing or the previous suggestion `suggested`; "" when the data folder was
    cleared (so is its suggestion); None when the user chose the output folder (keep theirs).

    >>> output_suggestion("/data/ixi", "", ""), output_suggestion("/data/ixi2", "/data/ixi-training", "/data/ixi-training")
    ('/data/ixi-training', '/data/ixi2-training')
    >>> output_suggestion("/data/ixi2", "/runs/mine", "/data/ixi-training") is None
    True
    """
    output, data = str(output or "").strip(), str(data or "").strip()
    if output and output != suggested:
        return None
    if not data:
        return ""
    path = Path(os.path.abspath(os.path.expanduser(data)))
    return str(path.parent / f"{path.name}-training") if path.name else ""


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
