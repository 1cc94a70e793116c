"""Learning from incomplete subjects: a subject with any two of the model's contrasts teaches it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import train_cli
from MRImputationLib.core.contrasts import IXI, Scenario
from MRImputationLib.models.mmgan.training_step import pixel_loss_on_missing, masked_mse


@pytest.fixture(scope="module")
def incomplete(tmp_path_factory) -> Path:
    """Six aligned phantom subjects (T1, T2, PD) of which sub-004 lacks PD and sub-005 lacks T2."""
    from MRImputationLib.data.phantom import PhantomConfig, write_phantom
    from MRImputationLib.preprocessing.folder import preprocess_folder
    from MRImputationLib.preprocessing.subject import PreprocessConfig

    root = tmp_path_factory.mktemp("incomplete")
    write_phantom(root / "raw", 6, PhantomConfig(shape=(48, 48, 24), misalignment="none"), seed=3)
    (root / "raw" / "sub-004" / "sub-004_PD.nii.gz").unlink()
    (root / "raw" / "sub-005" / "sub-005_T2.nii.gz").unlink()
    preprocess_folder(root / "raw", root / "pre", PreprocessConfig(n4=False, register=False, qc=False))
    split = {"train": ["sub-000", "sub-001", "sub-002", "sub-004", "sub-005"], "val": ["sub-003"], "test": []}
    (root / "split.json").write_text(json.dumps({"seed": 0, **split}))
    return root


def test_the_declared_contrasts_are_kept_and_every_subject_with_two_of_them_trains(incomplete, tmp_path):
    summary = train_cli(incomplete / "pre", tmp_path / "run", "--split", str(incomplete / "split.json"),
                        "--epochs", "2")
    assert summary["contrasts"]["names"] == ["T1", "T2", "PD"]  # not shrunk to what every subject has
    assert summary["train_subjects"] == 5 and summary["train_subjects_with"] == {"T1": 5, "T2": 4, "PD": 4}
    seen = summary["slices_per_scenario"]
    assert set(seen) <= {s.bits for s in IXI.scenarios()} and sum(seen.values()) > 0


def test_a_row_is_only_given_contrasts_its_subject_has_and_learns_only_present_targets(incomplete, tmp_path):
    from MRImputationLib.models.slicing import SlicingConfig
    from MRImputationLib.training.sampling import PairedSampler, fits
    from MRImputationLib.training.slice_cache import SliceDataset, build_cache

    cache = build_cache(incomplete / "pre", IXI, tmp_path / "cache", SlicingConfig(size=32, crop="brain", skip_empty=True))
    dataset = SliceDataset(cache, ["sub-000", "sub-004", "sub-005"])
    sampler = PairedSampler(dataset, 8, seed=0, contrasts=IXI)
    for epoch in range(2):
        for step, batch in enumerate(sampler.batches(epoch)):
            real = torch.stack([dataset[i][0] for i in batch])
            available, present = sampler.masks(batch, Scenario("110"), IXI.scenarios(), epoch, step)
            for row, index in enumerate(batch):
                has = dataset.presence(index)
                assert present[row].tolist() == [float(h) for h in has]
                assert fits(Scenario("".join("1" if a else "0" for a in available[row].tolist())), has)
                absent = [c for c, h in enumerate(has) if not h]
                assert not real[row, absent].any()  # the cache holds zeros where a contrast is absent


def test_losses_leave_out_the_contrasts_a_subject_lacks():
    real, fake = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    available = torch.tensor([[1.0, 0, 0], [1, 0, 0]])
    present = torch.tensor([[1.0, 1, 1], [1, 1, 0]])  # the second row's subject lacks PD
    assert float(pixel_loss_on_missing(fake, real, available)) == 1.0
    assert float(pixel_loss_on_missing(fake, real, available, present)) == 1.0  # a mean over the 3 present targets
    fake[1, 2] = 100.0  # whatever the network makes of the absent contrast does not count
    assert float(pixel_loss_on_missing(fake, real, available, present)) == 1.0
    maps = torch.zeros(2, 3, 2, 2)
    maps[1, 2] = 5.0
    assert float(masked_mse(maps, torch.zeros_like(maps), present)) == 0.0


def test_a_subject_with_fewer_than_two_contrasts_is_named_before_training(incomplete, tmp_path, capsys):
    from MRImputationLib.cli import main

    code = main(["train", str(incomplete / "pre"), "--out", str(tmp_path / "run"), "--config", "tiny",
                 "--contrasts", "T2,PD", "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "sub-004 has T2" in err and "sub-005 has PD" in err and "fewer than 2" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_declared_contrast_no_subject_has_is_named_before_training(incomplete, tmp_path, capsys):
    from MRImputationLib.cli import main

    code = main(["train", str(incomplete / "pre"), "--out", str(tmp_path / "run"), "--config", "tiny",
                 "--contrasts", "T1,T2,FLAIR", "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "no subject has FLAIR" in err and "T1 (6)" in err
    config = tmp_path / "declared.json"  # the same, declared in the configuration
    config.write_text(json.dumps({"model": "tiny", "contrasts": ["T1", "T2", "FLAIR"]}))
    code = main(["train", str(incomplete / "pre"), "--out", str(tmp_path / "run2"), "--config", str(config),
                 "--progress", "none"])
    assert code == 2 and "no subject has FLAIR" in capsys.readouterr().err


def test_evaluation_scores_a_cell_on_the_subjects_that_have_its_inputs_and_target(incomplete):
    from MRImputationLib.evaluation.harness import eval_subjects, evaluate
    from MRImputationLib.pipelines.evaluate import fit_baseline
    from MRImputationLib.preprocessing.preprocessed import load_subjects

    names = ["sub-000", "sub-004", "sub-005"]
    linear = fit_baseline(incomplete / "pre", ["sub-001", "sub-002", "sub-004", "sub-005"], IXI)
    subjects = eval_subjects(load_subjects(incomplete / "pre", names, IXI))
    assert subjects[1].present == (True, True, False) and subjects[0].present is None
    result = evaluate([linear], subjects, IXI, keep_examples=0)
    n = {(r["scenario"], r["contrast"]): r["n"] for r in result.summary() if r["scenario"] != "overall"}
    assert n[("110", "PD")] == 1  # sub-000 only: sub-004 has no PD, sub-005 no T2 to give
    assert n[("100", "T2")] == 2 and n[("100", "PD")] == 2  # sub-000 + sub-004 for T2; sub-000 + sub-005 for PD
    assert n[("011", "T1")] == 1 and n[("101", "T2")] == 1
    assert all(np.isfinite(r["psnr"]) for r in result.rows)


def test_the_linear_baseline_fits_each_target_on_the_subjects_that_have_it():
    from MRImputationLib.models.linear import LinearImputer

    rng = np.random.default_rng(0)
    t1, t2 = rng.uniform(0, 1, (2, 4, 8, 8))
    pd = 0.5 * t1 + 0.3 * t2 + 0.1
    full = np.stack([t1, t2, pd])
    broken = full.copy()
    broken[2] = 99.0  # a subject that lacks PD: its PD channel must never be read
    mask = np.ones(t1.shape, bool)
    fitted = LinearImputer(IXI).fit([(full, mask), (broken, mask, (True, True, False))])
    coefficients = fitted.coefficients["110"][2]
    assert np.allclose(coefficients[0], 0.1) and np.allclose(coefficients[1], [0.5, 0.3])
    again = LinearImputer.from_state(*fitted.to_state())
    assert np.allclose(again.coefficients["110"][2][1], coefficients[1])
