"""2.5-D: a network given each slice's neighbours, trained, imputed with, and started from a single-slice run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from MRImputationLib.core.contrasts import Scenario
from MRImputationLib.imputation.slice_imputer import InferenceOptions, SliceImputer
from MRImputationLib.training.run_folder import RunFolder
from MRImputationLib.training.slice_cache import SliceDataset

SETTINGS = {"model": "tiny", "epochs": 1, "batch_size": 8, "lr": 1e-3, "curriculum": "none", "crop": "brain",
            "skip_empty": True, "mixed_precision": "off", "steps_per_epoch": 3, "seed": 4}
CONTEXT = {"generator": {"context_slices": 1}}


def _train(data: Path, out: Path, settings: dict, tmp_path: Path, *extra: str) -> None:
    from MRImputationLib.cli import main

    config = tmp_path / f"{out.name}.json"
    config.write_text(json.dumps(settings))
    assert main(["train", str(data), "--out", str(out), "--config", str(config), "--progress", "none", *extra]) == 0


def _imputer(run: Path) -> SliceImputer:
    model = RunFolder(run).load_model(which="last")
    return SliceImputer(model.generator, model.model_config, model.slicing, InferenceOptions())


def test_a_training_item_carries_its_neighbours_and_zeros_beyond_the_subjects_slices(phantom_preprocessed, tmp_path):
    run = tmp_path / "context"
    _train(phantom_preprocessed, run, {**SETTINGS, "model_overrides": CONTEXT}, tmp_path)
    subject = json.loads((run / "split.json").read_text())["train"][0]
    plain, context = SliceDataset(run / "cache", [subject]), SliceDataset(run / "cache", [subject], context=1)
    n = len(plain)
    image, _ = context[1]
    assert image.shape[0] == 9  # T1, T2, PD of the slice, of the one before, of the one after
    assert torch.equal(image[:3], plain[1][0]) and torch.equal(image[3:6], plain[0][0]) and torch.equal(image[6:], plain[2][0])
    assert torch.all(context[0][0][3:6] == 0) and torch.all(context[n - 1][0][6:] == 0)


def test_a_2_5d_model_imputes_a_slice_from_its_neighbours_too(phantom_preprocessed, tmp_path):
    _train(phantom_preprocessed, tmp_path / "flat", SETTINGS, tmp_path)
    _train(phantom_preprocessed, tmp_path / "context", {**SETTINGS, "model_overrides": CONTEXT}, tmp_path)
    size = RunFolder(tmp_path / "flat").load_model().model_config.image_size
    slices = np.random.default_rng(1).uniform(0, 1, (5, 3, size, size)).astype(np.float32)
    changed = slices.copy()
    changed[3] = np.random.default_rng(2).uniform(0, 1, (3, size, size))  # the neighbour after slice 2
    scenario = Scenario("110")
    for name, depends in (("flat", False), ("context", True)):
        imputer = _imputer(tmp_path / name)
        before, after = imputer.predict_slices(slices, scenario)[2], imputer.predict_slices(changed, scenario)[2]
        assert np.array_equal(before[:2], slices[2, :2])  # the given contrasts stay the given ones
        assert (not np.allclose(before, after)) is depends, name
    # Neighbours are taken across batch boundaries: batches of two give what one batch gives.
    model = RunFolder(tmp_path / "context").load_model(which="last")
    small = SliceImputer(model.generator, model.model_config, model.slicing, InferenceOptions(batch_size=2))
    np.testing.assert_allclose(small.predict_slices(slices, scenario), _imputer(tmp_path / "context").predict_slices(
        slices, scenario), atol=1e-5)


def test_a_2_5d_run_started_from_a_single_slice_run_begins_as_exactly_that_model(phantom_preprocessed, tmp_path):
    source = tmp_path / "flat"
    _train(phantom_preprocessed, source, SETTINGS, tmp_path)
    tuned = tmp_path / "context"
    settings = {**SETTINGS, "model_overrides": CONTEXT, "init_from": str(source), "lr": 1e-12, "steps_per_epoch": 1}
    _train(phantom_preprocessed, tuned, settings, tmp_path, "--split", str(source / "split.json"))
    weights = torch.load(tuned / "checkpoints" / "last.pt", weights_only=True)["generator"]["down.0.0.weight"]
    assert weights.shape[1] == 9 and torch.all(weights[:, 3:].abs() < 1e-6)
    size = RunFolder(source).load_model().model_config.image_size
    slices = np.random.default_rng(3).uniform(0, 1, (4, 3, size, size)).astype(np.float32)
    flat = SliceImputer(RunFolder(source).load_model().generator, RunFolder(source).load_model().model_config,
                        RunFolder(source).slicing(), InferenceOptions())
    np.testing.assert_allclose(_imputer(tuned).predict_slices(slices, Scenario("011")),
                               flat.predict_slices(slices, Scenario("011")), atol=1e-4)


def test_at_the_brains_last_slices_a_2_5d_model_is_given_the_volumes_real_neighbours(phantom_preprocessed, tmp_path):
    """Imputation feeds only slices with brain; the slices just beyond them still serve as context."""
    from MRImputationLib.core.volume import Volume

    _train(phantom_preprocessed, tmp_path / "context", {**SETTINGS, "model_overrides": CONTEXT}, tmp_path)
    imputer = _imputer(tmp_path / "context")
    rng = np.random.default_rng(5)
    stack = rng.uniform(0, 1, (3, 10, 24, 24)).astype(np.float32)
    mask = np.zeros((10, 24, 24), bool)
    mask[3:7, 4:20, 4:20] = True  # brain in slices 3..6 only
    changed = stack.copy()
    changed[:, 2] = rng.uniform(0, 1, (3, 24, 24))  # a slice without brain, next to the first with it
    frame, scenario = Volume(np.zeros((10, 24, 24), np.float32)), Scenario("101")
    before = imputer.predict(stack, scenario, frame=frame, mask=mask)
    after = imputer.predict(changed, scenario, frame=frame, mask=mask)
    assert not np.allclose(before[1, 3], after[1, 3])  # slice 3 saw slice 2
    assert np.array_equal(before[1, 6], after[1, 6])  # slice 6 did not


def test_a_head_that_reads_the_input_cannot_grow_neighbours_from_a_warm_start(phantom_preprocessed, tmp_path, capsys):
    from MRImputationLib.cli import main

    head = {"generator": {"head": "full-resolution"}}
    source = tmp_path / "flat"
    _train(phantom_preprocessed, source, {**SETTINGS, "model_overrides": head}, tmp_path)
    grown = {**SETTINGS, "model_overrides": {"generator": {"head": "full-resolution", "context_slices": 1}},
             "init_from": str(source)}
    config = tmp_path / "grown.json"
    config.write_text(json.dumps(grown))
    assert main(["train", str(phantom_preprocessed), "--out", str(tmp_path / "grown"), "--config", str(config),
                 "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert "init_from" in err and "full-resolution" in err
