"""The CycleGAN family: unpaired sampling, learning, exact resume, export and import, imputation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import exported_and_loaded, train_cli, trained_and_untrained_psnr
from MRImputationLib.core.contrasts import ContrastSet, Scenario
from MRImputationLib.models.cyclegan.config import CycleGANConfig, preset
from MRImputationLib.models.cyclegan.losses import ImagePool, ssim

SETTINGS = {"model": "cyclegan-tiny", "epochs": 8, "batch_size": 4, "lr": 1e-3, "lr_linear_decay_after": 4,
            "curriculum": "none", "crop": "brain", "skip_empty": True, "mixed_precision": "off", "seed": 1}


@pytest.fixture(scope="module")
def cyclegan_run(phantom_preprocessed, tmp_path_factory):
    run = tmp_path_factory.mktemp("cyclegan") / "run"
    config = run.parent / "cyclegan.json"
    config.write_text(json.dumps(SETTINGS))
    return run, train_cli(phantom_preprocessed, run, "--contrasts", "T1,T2", config=str(config))


def test_unpaired_training_sees_each_patient_in_one_contrast_only(cyclegan_run, phantom_preprocessed):
    run, summary = cyclegan_run
    split = json.loads((run / "split.json").read_text())
    domains = summary["domains"]
    assert summary["pairing"] == "unpaired" and summary["scenarios"] == ["10", "01"]
    assert set(domains) == {"T1", "T2"} and domains["T1"] and domains["T2"]
    assert not set(domains["T1"]) & set(domains["T2"])
    assert sorted(domains["T1"] + domains["T2"]) == sorted(split["train"])


def test_the_unpaired_sampler_zeroes_the_contrast_a_row_is_not_seen_in(cyclegan_run):
    from MRImputationLib.training.sampling import UnpairedSampler, hide_absent
    from MRImputationLib.training.slice_cache import SliceDataset

    run, _ = cyclegan_run
    split = json.loads((run / "split.json").read_text())
    dataset = SliceDataset(run / "cache", split["train"])
    sampler = UnpairedSampler(dataset, 3, seed=1, contrasts=ContrastSet(("T1", "T2"), "T1"))
    batch = sampler.batches(0)[0]
    real = torch.stack([dataset[i][0] for i in batch])
    visible, present = sampler.masks(batch, Scenario("10"), [Scenario("10")], 0, 0)
    given = hide_absent(real, present)  # what the trainer hands the step
    assert visible.tolist() == [[1, 0]] * 3 + [[0, 1]] * 3 and torch.equal(present, visible)
    assert torch.equal(given[:3, 1], torch.zeros_like(given[:3, 1])) and torch.equal(given[3:, 0], torch.zeros_like(given[3:, 0]))
    assert torch.equal(given[:3, 0], real[:3, 0]) and torch.equal(given[3:, 1], real[3:, 1])
    subjects = {dataset.locate(i)[0] for i in batch[:3]}, {dataset.locate(i)[0] for i in batch[3:]}
    assert not subjects[0] & subjects[1]
    assert sampler.batches(0) == sampler.batches(0) and sampler.batches(0) != sampler.batches(1)


def test_trained_beats_untrained_on_a_held_out_subject_in_both_directions_after_export(cyclegan_run,
                                                                                     phantom_preprocessed, tmp_path):
    run, _ = cyclegan_run
    info, model = exported_and_loaded(run, tmp_path / "bundle")
    assert info["model"]["family"] == "cyclegan" and info["scenarios"] == ["10", "01"]
    assert type(model.model_config) is CycleGANConfig
    scores = trained_and_untrained_psnr(model, run, phantom_preprocessed)
    assert scores["trained"] > scores["untrained"] + 3.0, scores


def test_an_interrupted_and_resumed_run_equals_an_uninterrupted_one(phantom_preprocessed, tmp_path):
    """Weights, both Adam states, the LR decay, the RNG and the image pools come back from the checkpoint."""
    from MRImputationLib.cli import main

    settings = {**SETTINGS, "epochs": 3, "steps_per_epoch": 3, "lr_linear_decay_after": 1}
    straight, stop = tmp_path / "straight.json", tmp_path / "stop.json"
    straight.write_text(json.dumps(settings))
    stop.write_text(json.dumps({**settings, "stop_after_steps": 4}))
    train_cli(phantom_preprocessed, tmp_path / "straight", "--contrasts", "T1,T2", config=str(straight))
    split = str(tmp_path / "straight" / "split.json")
    train_cli(phantom_preprocessed, tmp_path / "resumed", "--contrasts", "T1,T2", "--split", split, config=str(stop))
    assert main(["train", str(phantom_preprocessed), "--out", str(tmp_path / "resumed"), "--resume",
                 "--progress", "none"]) == 0
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    for network in ("generators", "discriminators"):
        assert all(torch.equal(a[network][k], b[network][k]) for k in a[network])
    assert torch.equal(a["step_state"]["pool_a"], b["step_state"]["pool_a"]) and len(a["step_state"]["pool_a"]) > 0
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "straight" / "history.jsonl").read_text().splitlines()]
    assert lrs[0] == 1e-3 and lrs[1] < lrs[0] and lrs[2] < lrs[1]  # linear decay after the first epoch


def test_impute_synthesizes_the_other_contrast_with_an_uncertainty_map(cyclegan_run, phantom_preprocessed,
                                                                      tmp_path):
    from MRImputationLib.cli import main

    run, _ = cyclegan_run
    raw = phantom_preprocessed.parent / "raw" / "sub-000"
    assert main(["impute", "--model", str(run), "--input", f"T2={raw / 'sub-000_T2.nii.gz'}", "--out",
                 str(tmp_path / "out"), "--uncertainty", "2", "--progress", "none"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["scenario"] == "01" and report["given"] == ["T2"] and report["synthesized"] == ["T1"]
    assert (tmp_path / "out" / "T1_synthetic.nii.gz").exists() and (tmp_path / "out" / "T1_uncertainty.nii.gz").exists()


def test_a_cyclegan_on_three_contrasts_is_a_clear_error_before_training(phantom_preprocessed, tmp_path, capsys):
    from MRImputationLib.cli import main

    assert main(["train", str(phantom_preprocessed), "--out", str(tmp_path / "run"), "--config", "cyclegan-tiny",
                 "--progress", "none"]) == 2
    assert "exactly two contrasts" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_configuration_round_trips_and_rejects_bad_fields():
    from MRImputationLib.core.errors import InputError
    from MRImputationLib.models.family import model_config_from_dict

    config = preset("cyclegan-resnet", 2)
    assert model_config_from_dict(config.to_dict()) == config
    with pytest.raises(InputError, match="generator 'vgg'"):
        model_config_from_dict({**config.to_dict(), "generator": "vgg"})
    with pytest.raises(InputError, match="unknown field"):
        model_config_from_dict({**config.to_dict(), "lamda_cycle": 1})


def test_ssim_loss_and_image_pool():
    x = torch.rand(2, 1, 32, 32)
    assert float(ssim(x, x)) == pytest.approx(1.0) and float(ssim(x, torch.rand(2, 1, 32, 32))) < 0.5
    torch.manual_seed(0)
    pool = ImagePool(2)
    first = pool.query(torch.zeros(2, 1, 4, 4))
    assert torch.equal(first, torch.zeros(2, 1, 4, 4)) and len(pool.images) == 2
    mixed = pool.query(torch.ones(8, 1, 4, 4))
    assert 0 < float(mixed.mean()) < 1  # some new fakes, some from the pool
    restored = ImagePool(2)
    restored.load_state_dict(pool.state_dict(), "cpu")
    assert all(torch.equal(a, b) for a, b in zip(restored.images, pool.images))
    assert np.isfinite(float(ssim(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16))))
