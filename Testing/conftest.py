"""Shared fixtures: paths to the real cases and small phantom subjects."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Tests use tiny networks: one thread each. Two OpenMP threads on a 2-core machine that is busy
# elsewhere spin-wait on each other and ran a tiny training step 30x slower. Child processes inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "MRImputation"))  # the Lib also works uninstalled, as inside Slicer

REAL_DATA = REPO.parent / "shared" / "data" / "real"
LPS_CASE = REAL_DATA / "BraTS-GLI-00001-000"
RAS_CASE = REAL_DATA / "BraTS-MET-00110-000"
BRAINLESION_CASE = REAL_DATA / "TCGA-DU-7294"


def real_case(case: Path) -> Path:
    if not case.is_dir():
        pytest.skip(f"shared real case {case} is not present")
    return case


@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory) -> Path:
    """Two small misaligned phantom subjects (T1, T2, PD) written once per test session."""
    from MRImputationLib.data.phantom import PhantomConfig, write_phantom

    out = tmp_path_factory.mktemp("phantom")
    write_phantom(out, 2, PhantomConfig(shape=(64, 64, 40), misalignment="rigid"), seed=7)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A `tiny` MM-GAN bundle trained for a few dozen steps on aligned phantom subjects."""
    from MRImputationLib.pipelines.export import export_run
    from MRImputationLib.preprocessing.folder import preprocess_folder
    from MRImputationLib.data.phantom import PhantomConfig, write_phantom
    from MRImputationLib.preprocessing.subject import PreprocessConfig
    from MRImputationLib.pipelines.train import train_run

    root = tmp_path_factory.mktemp("tiny_bundle")
    write_phantom(root / "raw", 4, PhantomConfig(shape=(48, 48, 32), misalignment="none", bias_strength=0.05), seed=21)
    preprocess_folder(root / "raw", root / "pre", PreprocessConfig(n4=False, register=False, qc=False))
    train_run(root / "pre", root / "run", "tiny", {"epochs": 4, "steps_per_epoch": 10})
    return export_run(root / "run", root / "bundle")


def signal_widgets(path: Path) -> list[str]:
    """The .ui widget names a panel connects through its `SIGNALS` table ("widget.signal" -> slot)."""
    import ast

    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SIGNALS" for t in node.targets)
                and isinstance(node.value, ast.Dict)):
            names += [key.value.split(".")[0] for key in node.value.keys if isinstance(key, ast.Constant)]
    return names


@pytest.fixture
def scene():
    """A bare MRML scene as slicer.mrmlScene (what slicer-core offers instead of the application)."""
    slicer = pytest.importorskip("slicer")
    previous = getattr(slicer, "mrmlScene", None)
    slicer.mrmlScene = slicer.vtkMRMLScene()
    yield slicer.mrmlScene
    slicer.mrmlScene = previous


def preprocessed_phantom(root: Path, subjects: int, shape: tuple[int, int, int], seed: int) -> Path:
    """`subjects` aligned phantom subjects (T1, T2, PD) written to ROOT/raw and preprocessed without N4 and
    registration (seconds) into ROOT/pre, which is returned."""
    from MRImputationLib.data.phantom import PhantomConfig, write_phantom
    from MRImputationLib.preprocessing.folder import preprocess_folder
    from MRImputationLib.preprocessing.subject import PreprocessConfig

    write_phantom(root / "raw", subjects, PhantomConfig(shape=shape, misalignment="none"), seed=seed)
    preprocess_folder(root / "raw", root / "pre", PreprocessConfig(n4=False, register=False, qc=False))
    return root / "pre"


@pytest.fixture(scope="session")
def phantom_preprocessed(tmp_path_factory) -> Path:
    """Six aligned 48×48×24 phantom subjects, preprocessed (shared by the training tests; read only)."""
    return preprocessed_phantom(tmp_path_factory.mktemp("phantom_preprocessed"), 6, (48, 48, 24), seed=3)


def train_cli(data: Path, out: Path, *extra: str, config: str = "tiny") -> dict:
    """`mrimpute train DATA --out OUT --config CONFIG ...` in this process; the run's summary."""
    import json

    from MRImputationLib.cli import main

    assert main(["train", str(data), "--out", str(out), "--config", config, "--progress", "none", *extra]) == 0
    return json.loads((out / "summary.json").read_text())


def exported_and_loaded(run: Path, bundle: Path):
    """`mrimpute export RUN BUNDLE --no-baseline`, then the bundle loaded back: (bundle.json, LoadedModel)."""
    import json

    from MRImputationLib.cli import main
    from MRImputationLib.models.loading import load_model

    assert main(["export", str(run), str(bundle), "--no-baseline"]) == 0
    return json.loads((bundle / "bundle.json").read_text()), load_model(bundle)


def trained_and_untrained_psnr(model, run: Path, preprocessed: Path) -> dict:
    """Overall PSNR of a loaded model and of an untrained network of its architecture on the run's test
    subjects, every scenario the model serves: {"trained": dB, "untrained": dB}."""
    import json

    import torch

    from MRImputationLib.evaluation.harness import eval_subjects, evaluate
    from MRImputationLib.imputation.slice_imputer import SliceImputer
    from MRImputationLib.models.family import served_scenarios
    from MRImputationLib.models.loading import build_generator_for
    from MRImputationLib.preprocessing.preprocessed import load_subjects

    torch.manual_seed(0)
    untrained = build_generator_for(model.model_config)
    names = json.loads((run / "split.json").read_text())["test"]
    subjects = eval_subjects(load_subjects(preprocessed, names, model.contrasts))
    imputers = [SliceImputer(model.generator, model.model_config, model.slicing, name="trained"),
                SliceImputer(untrained, model.model_config, model.slicing, name="untrained")]
    result = evaluate(imputers, subjects, model.contrasts, served_scenarios(model.model_config, model.contrasts),
                      keep_examples=0)
    return {r["method"]: r["psnr_mean"] for r in result.summary() if r["scenario"] == "overall"}
