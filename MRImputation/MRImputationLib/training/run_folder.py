"""A training run's folder: its layout in one place, and what is read back from it.

    config.json (TrainConfig)   model.json (ModelConfig)   contrasts.json   split.json
    cache/ (slices)   checkpoints/last.pt, best.pt   tensorboard/   history.jsonl   summary.json
    preprocessed/ (when training started from raw data)   evaluation/ (after `train --evaluate`)

While a training writes it, the run is locked: `.<run>.lock` beside it holds the trainer's pid
(core/locking.py), so a second `train` into the same folder is refused, naming the first.

>>> run = RunFolder("runs/a")
>>> run.best_checkpoint.as_posix(), run.holds_run()
('runs/a/checkpoints/best.pt', False)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..core.contrasts import ContrastSet
from ..core.errors import InputError
from ..core.options import read_json_file
from ..models.as_trained import PreprocessingAsTrained
from ..models.slicing import SlicingConfig

# Every file and folder of a run, by the name the code uses for it.
LAYOUT = dict(
    config="config.json", model="model.json", contrasts="contrasts.json", split="split.json", cache="cache",
    checkpoints="checkpoints", last_checkpoint="checkpoints/last.pt", best_checkpoint="checkpoints/best.pt",
    tensorboard="tensorboard", history="history.jsonl", summary="summary.json", preprocessed="preprocessed",
    evaluation="evaluation", outdated_evaluation="evaluation-outdated",
)
DEFINING_FILES = ("config.json", "model.json", "contrasts.json", "split.json")


@dataclass(frozen=True)
class RunFolder:
    """The folder given to `mrimpute train --out`."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __getattr__(self, name: str) -> Path:
        """`run.config`, `run.best_checkpoint` ...: the paths of LAYOUT."""
        if name in LAYOUT:
            return self.path / LAYOUT[name]
        raise AttributeError(f"RunFolder has no {name!r}; its files are {', '.join(LAYOUT)}")

    def holds_run(self) -> bool:
        """A trained (or training) run: its model and a checkpoint folder are there."""
        return self.path.is_dir() and self.model.exists() and self.checkpoints.is_dir()

    def lock(self, log=None):
        """`with run.lock(log):` only this process trains into the run (InputError naming the one that does)."""
        from ..core.locking import FolderLock, sibling_lock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        return FolderLock(sibling_lock(self.path), f"--out {self.path}", log)

    def missing(self, names=DEFINING_FILES) -> list[str]:
        """Which of the run's defining files are absent."""
        return [name for name in names if not (self.path / name).exists()]

    def require(self, names=("config.json", "model.json", "contrasts.json")) -> None:
        """InputError unless the folder holds a run's defining files."""
        missing = self.missing(names)
        if missing:
            raise InputError(f"{self.path}: not a training run ({', '.join(missing)} missing); "
                             "give the folder passed to `train --out`.")

    # -- reading it back -------------------------------------------------------------------------
    def read_json(self, path: Path, default=None):
        """A JSON file of the run; `default` when it is absent (None: absence is an error)."""
        if not path.exists():
            if default is not None:
                return default
            raise InputError(f"{path}: missing; the run is incomplete.")
        return read_json_file(path, "training run")

    def read_contrasts(self) -> ContrastSet:
        return ContrastSet.from_dict(self.read_json(self.contrasts))

    def read_model_config(self):
        """The run's model configuration, typed by its model family."""
        from ..models.family import model_config_from_dict

        return model_config_from_dict(self.read_json(self.model))

    def read_config(self):
        from .config import TrainConfig

        return TrainConfig.from_dict(self.read_json(self.config))

    def read_history(self) -> list[dict]:
        """One record per epoch (and per stop), in order; [] before the first epoch. A line cut short
        by a crash (or still being written while a panel reads it) is left out."""
        if not self.history.is_file():
            return []
        records = []
        for line in self.history.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def slicing(self) -> SlicingConfig:
        """How the run cut its slices."""
        config = self.read_json(self.config)
        size = self.read_json(self.model)["image_size"]
        return SlicingConfig(size=size, crop=config["crop"], skip_empty=config["skip_empty"])

    def weights(self, which: str = "best") -> tuple[dict, str]:
        """The weights of the network that imputes (the family's `inference_network`): from best.pt (highest
        validation PSNR) when present and asked for, else last.pt."""
        from ..models.family import family_of
        from .checkpoint import load_checkpoint

        chosen = self.best_checkpoint if which == "best" and self.best_checkpoint.exists() else self.last_checkpoint
        if not chosen.exists():
            raise InputError(f"{self.path}: no checkpoint found; train first.")
        return load_checkpoint(chosen)[family_of(self.read_model_config()).inference_network], chosen.name

    def normalization_record(self, method: str) -> dict:
        """The normalization the training slices went through, as the slice cache recorded it (imputation
        must repeat it exactly); the current default for `method` if the cache is gone."""
        from ..preprocessing.normalization import NormalizationConfig
        from .slice_cache import INDEX_NAME

        index = self.cache / INDEX_NAME
        if index.exists():
            for subject in json.loads(index.read_text()).get("subjects", {}).values():
                for params in subject.get("normalization", {}).values():
                    return NormalizationConfig.from_record(params).to_record()
        return NormalizationConfig(method=method).to_record()

    def as_trained(self) -> PreprocessingAsTrained:
        """Preprocessing as this run's data went through it (for its bundle)."""
        from ..preprocessing.manifest import read_manifest

        summary = self.read_json(self.summary, default={})
        manifest_config = {}
        if summary.get("preprocessed"):
            try:
                manifest_config = read_manifest(summary["preprocessed"])["config"]
            except InputError:
                manifest_config = {}
        normalization = self.normalization_record(manifest_config.get("normalization", "percentile"))
        return PreprocessingAsTrained.from_training(manifest_config, normalization, self.slicing())

    def load_model(self, device: str = "cpu", which: str = "best"):
        """The run's generator (best, else last checkpoint; `which="last"`: last) as a LoadedModel, without
        exporting a bundle."""
        from ..models.loading import LoadedModel, build_generator_for

        model_config = self.read_model_config()
        contrasts = self.read_contrasts()
        weights, name = self.weights(which)
        generator = build_generator_for(model_config)
        generator.load_state_dict(weights)
        info = {"name": model_config.name, "version": f"run:{self.path.name}:{name}", "contrasts": list(contrasts.names),
                "reference": contrasts.reference}
        return LoadedModel(generator.eval(), model_config, contrasts, self.as_trained(), info, self.path)


def load_run_or_bundle(path, device: str = "cpu"):
    """A LoadedModel from a run folder (its best, else last, checkpoint) or a bundle folder/.zip (hash-checked)."""
    from ..models.loading import load_model

    run = RunFolder(path)
    return run.load_model(device) if run.holds_run() else load_model(path, device)
