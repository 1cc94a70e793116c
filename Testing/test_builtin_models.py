"""Built-in models (MRImputation/Resources/Models/<name>/): every shipped one loads, matches its hashes and
imputes a phantom case; the mechanics (listing, read-only, names, CMake list, demo, fp16) on a tiny
untrained bundle in a temporary Resources-like folder."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from MRImputationLib.core.errors import InputError
from MRImputationLib.models.bundle_files import seal_document
from MRImputationLib.models.store import BUILTIN_MODELS, ModelStore, verify_bundle
from MRImputationLib.slicer.self_test_data import SELF_TEST_MODEL, untrained_bundle

torch = pytest.importorskip("torch")

MODULE = REPO / "MRImputation"
SHIPPED = sorted(p for p in BUILTIN_MODELS.iterdir() if (p / "bundle.json").is_file()) if BUILTIN_MODELS.is_dir() else []
BRATS = ("T1", "T1c", "FLAIR")


def impute_phantom_case(bundle: Path, work: Path, shape=(48, 48, 32)) -> tuple[dict, Path]:
    """One aligned phantom subject with the bundle's contrasts, one contrast hidden and imputed on the CPU."""
    from MRImputationLib.core.io import write_volume
    from MRImputationLib.models.bundle import read_bundle_info
    from MRImputationLib.pipelines.demo_builtin import choose_hidden
    from MRImputationLib.pipelines.impute import ImputeOptions, impute
    from MRImputationLib.slicer.self_test_data import phantom_volumes

    info, _ = read_bundle_info(bundle)
    hidden = choose_hidden(info.contrasts, info.reference, None, info.scenarios)
    volumes = phantom_volumes(shape=shape, contrasts=tuple(info.contrasts))
    files = {c: write_volume(v, work / "inputs" / f"{c}.nii.gz") for c, v in volumes.items()}
    given = {c: f for c, f in files.items() if c != hidden}
    report = impute(bundle, given, work / "out", ImputeOptions(device="cpu", register=False),
                    references={hidden: files[hidden]})
    return report, work / "out" / f"{hidden}_synthetic.nii.gz"


def check_builtin_bundle(bundle: Path, work: Path) -> None:
    from MRImputationLib.models.bundle import read_baseline
    from MRImputationLib.models.loading import load_model

    info = verify_bundle(bundle)  # every file against bundle.json's SHA-256
    model = load_model(bundle)
    assert list(model.contrasts.names) == info.contrasts
    assert all(p.dtype == torch.float32 for p in model.generator.parameters())
    baseline = read_baseline(bundle)
    assert baseline is None or list(baseline.contrasts.names) == info.contrasts
    report, synthetic = impute_phantom_case(bundle, work)
    assert synthetic.is_file() and all(np.isfinite(v) for v in report["comparison"][synthetic.name.split("_")[0]].values()
                                       if isinstance(v, float))


@pytest.mark.skipif(not SHIPPED, reason=f"no built-in model in {BUILTIN_MODELS} yet")
@pytest.mark.parametrize("bundle", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_builtin_model_loads_matches_its_hashes_and_imputes_a_phantom_case(bundle, tmp_path):
    check_builtin_bundle(bundle, tmp_path)


def test_every_file_of_a_builtin_model_is_listed_in_cmake():
    text = (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")
    body = re.search(r"set\(MODULE_PYTHON_RESOURCES\s+(.*?)\)", text, re.S).group(1)
    listed = {line.strip() for line in body.splitlines() if line.strip()}
    files = [p.relative_to(MODULE).as_posix() for p in sorted(BUILTIN_MODELS.rglob("*")) if p.is_file()] \
        if BUILTIN_MODELS.is_dir() else []
    missing = [f for f in files if f not in listed]
    assert not missing, ("not packaged with the extension: add to MODULE_PYTHON_RESOURCES in "
                         "MRImputation/CMakeLists.txt:\n  " + "\n  ".join(missing))


@pytest.fixture(scope="module")
def resources(tmp_path_factory) -> Path:
    """A Resources-like folder: Models/brats-tiny/ holding an untrained T1, T1c, FLAIR bundle."""
    root = tmp_path_factory.mktemp("Resources")
    untrained_bundle(root / "Models" / "brats-tiny", contrasts=BRATS, reference="T1")
    return root


def test_a_builtin_model_in_a_resources_folder_loads_and_imputes_a_phantom_case(resources, tmp_path):
    check_builtin_bundle(resources / "Models" / "brats-tiny", tmp_path)


def test_builtin_models_are_listed_beside_installed_ones_and_are_read_only(resources, tmp_path):
    store = ModelStore(tmp_path / "models", builtin=resources / "Models")
    [card] = store.builtin()
    assert card.builtin and card.installed and card.kind == "built-in" and "built-in" in card.label()
    assert "Built into the extension" in card.to_html() and store.installed() == []
    with pytest.raises(InputError, match="built into the extension and cannot be replaced"):
        store.import_bundle(card.path)
    with pytest.raises(InputError, match="cannot be removed"):
        store.remove(card)
    other = _renamed(card.path, tmp_path / "other", "mine", "0.1")
    assert store.import_bundle(_renamed(card.path, tmp_path / "same", card.name, "0.0.2")).kind == "installed"
    other = store.import_bundle(other)
    assert [c.kind for c in store.local()] == ["built-in", "installed", "installed"]
    assert [c.id for c in store.cards()][0] == card.id
    assert store.clear() == 2 and [c.id for c in store.local()] == [card.id]
    assert (resources / "Models" / "brats-tiny" / "bundle.json").is_file() and not other.path.exists()


def _renamed(bundle: Path, folder: Path, name: str, version: str) -> Path:
    """A copy of `bundle` under another name and version (only bundle.json changes; the weights are hashed)."""
    shutil.copytree(bundle, folder)
    info = json.loads((bundle / "bundle.json").read_text())
    (folder / "bundle.json").write_text(json.dumps(seal_document({**info, "name": name, "version": version})))
    return folder


def test_a_model_name_resolves_among_builtin_and_installed_bundles(resources, tmp_path):
    store = ModelStore(tmp_path / "models", builtin=resources / "Models")
    builtin = resources / "Models" / "brats-tiny"
    assert store.resolve(SELF_TEST_MODEL) == builtin
    assert store.resolve(f"{SELF_TEST_MODEL}-0.0.1") == builtin == store.resolve(f"{SELF_TEST_MODEL} 0.0.1")
    assert store.resolve(str(tmp_path)) == tmp_path  # a path that exists is taken as it is
    store.import_bundle(_renamed(builtin, tmp_path / "a", "mine", "0.10"))
    store.import_bundle(_renamed(builtin, tmp_path / "b", "mine", "0.9"))
    assert store.resolve("mine").name == "mine-0.10" and store.resolve("mine-0.9").name == "mine-0.9"
    with pytest.raises(InputError) as error:
        store.resolve("absent", "--model")
    message = str(error.value)
    assert message.startswith("--model 'absent': no such file or folder") and "mrimpute models" in message
    assert f"{SELF_TEST_MODEL}-0.0.1 (built-in, T1, T1c, FLAIR)" in message and "mine-0.9 (installed" in message


def test_fp16_weights_impute_a_phantom_case_within_a_small_tolerance_of_fp32(resources, tmp_path):
    from MRImputationLib.core.io import read_volume
    from MRImputationLib.models.bundle import load_bundle, read_bundle_info, write_bundle

    full = resources / "Models" / "brats-tiny"
    info, _ = read_bundle_info(full)
    half = write_bundle(tmp_path / "half", info, load_bundle(full).weights, half=True)
    assert (half / "generator.safetensors").stat().st_size < 0.55 * (full / "generator.safetensors").stat().st_size
    _, a = impute_phantom_case(full, tmp_path / "fp32")
    _, b = impute_phantom_case(half, tmp_path / "fp16")
    a, b = read_volume(a).array, read_volume(b).array
    assert np.abs(a - b).max() <= 0.01 * (np.abs(a).max() + 1e-6)


def test_the_demo_shows_a_builtin_model_on_a_phantom_with_its_contrasts(resources, tmp_path, monkeypatch):
    from MRImputationLib.core.progress import Progress
    from MRImputationLib.data.discovery import discover_subjects
    from MRImputationLib.data.phantom import PhantomConfig, write_phantom
    from MRImputationLib.pipelines import demo_builtin

    monkeypatch.setattr(demo_builtin, "PHANTOM_SHAPE", (40, 40, 26))
    monkeypatch.setattr(demo_builtin, "PHANTOM_SPACING", (6.0, 6.0, 6.0))
    write_phantom(tmp_path / "ixi", 1, PhantomConfig(shape=(24, 24, 16)), seed=1)  # T1, T2, PD: not the model's
    subjects = discover_subjects(tmp_path / "ixi")
    sections, results = demo_builtin.builtin_demo(tmp_path / "demo", subjects, True, Progress("none"),
                                                  builtin=resources / "Models")
    [result] = results
    assert result["hidden"] == "FLAIR" and result["given"] == ["T1", "T1c"]
    assert "Built-in model self-test-untrained 0.0.1: FLAIR" in sections[0] and "phantom" in sections[0]
    assert (tmp_path / "demo" / "builtin" / "phantom-T1-T1c-FLAIR").is_dir()
    lines = []
    progress = Progress("none")
    progress.log = lines.append
    assert demo_builtin.builtin_demo(tmp_path / "real", subjects, False, progress, builtin=resources / "Models") == ([], [])
    assert any("skipped, no subject in the data has all of T1, T1c, FLAIR" in line for line in lines)
    assert demo_builtin.builtin_demo(tmp_path / "none", subjects, True, progress, builtin=tmp_path / "absent") == ([], [])


def test_export_writes_the_model_card_and_refuses_an_unknown_field_or_broken_json(tiny_bundle, tmp_path):
    from MRImputationLib.cli import main

    run = tiny_bundle.parent / "run"
    card = {"description": "what it is", "intended_use": "what for", "license": "terms",
            "metrics": {"test_table": [{"psnr_mean": 20.0}]}, "training_data": "a public collection"}
    (tmp_path / "card.json").write_text(json.dumps(card))
    assert main(["export", str(run), str(tmp_path / "bundle"), "--card", str(tmp_path / "card.json"),
                 "--no-baseline", "--progress", "none"]) == 0
    info = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert (info["description"], info["intended_use"], info["license"]) == ("what it is", "what for", "terms")
    assert info["metrics"]["test_table"] == card["metrics"]["test_table"]
    assert info["training"]["data"] == "a public collection" and verify_bundle(tmp_path / "bundle")
    (tmp_path / "unknown.json").write_text(json.dumps({"author": "x"}))
    (tmp_path / "broken.json").write_text("{")
    for bad in ("unknown.json", "broken.json"):
        assert main(["export", str(run), str(tmp_path / bad.replace(".json", "")), "--card", str(tmp_path / bad),
                     "--no-baseline", "--progress", "none"]) == 2
        assert not (tmp_path / bad.replace(".json", "")).exists()
