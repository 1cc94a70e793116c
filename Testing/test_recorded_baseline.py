"""The linear baseline a bundle carries: fitted at export on the run's training split, exactly as
`mrimpute evaluate` fits it, and scored beside the model on any data (EVALUATION.md: "Baselines are
fitted on the model's training data"); evaluate falls back to fitting on DATA only without one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from MRImputationLib.models.bundle import BASELINE_FILE, read_baseline  # noqa: E402
from MRImputationLib.models.bundle_files import seal_document  # noqa: E402
from MRImputationLib.pipelines.evaluate import RECORDED, evaluate_model, fit_baseline  # noqa: E402


def _without_baseline(bundle: Path, folder: Path) -> Path:
    """A copy of `bundle` as an export before baselines were recorded: no baseline.safetensors."""
    shutil.copytree(bundle, folder)
    (folder / BASELINE_FILE).unlink()
    document = json.loads((folder / "bundle.json").read_text())
    del document["files"][BASELINE_FILE]
    document["baseline"] = {}
    (folder / "bundle.json").write_text(json.dumps(seal_document(document)))  # as such an export wrote it
    return folder


def test_export_records_the_baseline_fitted_on_the_runs_training_split_as_evaluate_fits_it(tiny_bundle):
    root = tiny_bundle.parent
    document = json.loads((tiny_bundle / "bundle.json").read_text())
    assert BASELINE_FILE in document["files"] and "training split of run run" in document["baseline"]["fitted_on"]
    recorded = read_baseline(tiny_bundle)
    train = json.loads((root / "run" / "split.json").read_text())["train"]
    again = fit_baseline(root / "pre", train, recorded.contrasts)
    assert recorded.n_subjects == len(train) and np.array_equal(recorded.moments, again.moments)
    assert recorded.coefficients.keys() == again.coefficients.keys()


def test_evaluate_scores_the_recorded_baseline_and_says_so_in_results(tiny_bundle, tmp_path):
    root = tiny_bundle.parent
    result = evaluate_model(tiny_bundle, root / "pre", tmp_path / "eval")
    assert result["baseline"]["fitted_on"] == RECORDED
    document = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert document["baseline"]["fitted_on"] == RECORDED and document["methods"][0] == "linear"
    assert "Linear baseline: fitted on the model's training data" in (tmp_path / "eval" / "results.md").read_text()


def test_without_a_recorded_baseline_evaluate_fits_one_on_data_or_leaves_it_out(tiny_bundle, tmp_path):
    root = tiny_bundle.parent
    bare = _without_baseline(tiny_bundle, tmp_path / "bare")
    assert read_baseline(bare) is None
    fitted = evaluate_model(bare, root / "pre", tmp_path / "fitted")
    train = json.loads((root / "run" / "split.json").read_text())["train"]
    assert fitted["baseline"]["fitted_on"].startswith("the split's training subjects present in DATA")
    assert fitted["baseline"]["subjects"] == [s for s in train if s not in fitted["subjects"]]
    assert "Linear baseline: fitted on the split's training subjects" in (tmp_path / "fitted" / "results.md").read_text()
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["elsewhere-1"], "val": [], "test": fitted["subjects"]}))
    left_out = evaluate_model(bare, root / "pre", tmp_path / "left", split_file=split)
    assert left_out["baseline"]["fitted_on"] is None and "left out" in left_out["baseline"]["note"]
    assert json.loads((tmp_path / "left" / "results.json").read_text())["methods"] == [
        m for m in json.loads((tmp_path / "fitted" / "results.json").read_text())["methods"] if m != "linear"]
