"""A trained generator from a model bundle (folder or .zip, every hash checked, nothing unpickled).

A training run folder is read by `training.run_folder.RunFolder.load_model`; commands that take
either use `training.run_folder.load_run_or_bundle`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.contrasts import ContrastSet
from .as_trained import PreprocessingAsTrained
from .family import FamilyConfig, family_of
from .slicing import SlicingConfig


@dataclass
class LoadedModel:
    generator: object  # torch.nn.Module
    model_config: FamilyConfig
    contrasts: ContrastSet
    as_trained: PreprocessingAsTrained  # what imputation repeats: N4, registration, normalization, slicing
    info: dict  # bundle.json as written (with the weights' SHA-256), or the run's equivalent
    source: Path

    @property
    def slicing(self) -> SlicingConfig:
        return self.as_trained.slicing

    @property
    def flip_average(self) -> bool:
        """Whether the model runs with test-time flips (its bundle's `inference`; run folders: no)."""
        inference = self.info.get("inference") if isinstance(self.info, dict) else None
        return bool((inference or {}).get("flip_average", False))

    @property
    def scenarios(self) -> list:
        """The scenarios it serves: as its bundle declares them, else as its family says (run folders)."""
        from ..core.contrasts import Scenario
        from .family import served_scenarios

        declared = self.info.get("scenarios") if isinstance(self.info, dict) else None
        return [Scenario(b) for b in declared] if declared else served_scenarios(self.model_config, self.contrasts)


def build_generator_for(model_config: FamilyConfig):
    """An untrained generator (the network that imputes) of the architecture `model_config` describes,
    built by the configuration's model family."""
    return family_of(model_config).build_inference_network(model_config)


def load_model(path: str | Path, device: str = "cpu") -> LoadedModel:
    """From a bundle folder or .zip (format version and every hash checked)."""
    from .bundle import load_bundle, read_bundle_info

    path = Path(path)
    bundle = load_bundle(path)
    info = bundle.info
    _, document = read_bundle_info(path)
    model_config = info.model_config()
    generator = build_generator_for(model_config)
    generator.load_state_dict(bundle.weights[family_of(model_config).inference_network])
    as_trained = PreprocessingAsTrained.from_bundle_fields(info.normalization, info.preprocessing,
                                                           image_size=model_config.image_size)
    return LoadedModel(generator.eval(), model_config, ContrastSet(tuple(info.contrasts), info.reference), as_trained,
                       document, path)
