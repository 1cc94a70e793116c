"""The VAE-UNet family: one declared target from the other contrasts; learning, exact resume, export, impute."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import exported_and_loaded, train_cli, trained_and_untrained_psnr
from MRImputationLib.models.vaeunet.config import VAEUNetConfig, preset
from MRImputationLib.models.vaeunet.training_step import kl_divergence

SETTINGS = {"model": "vae-unet-tiny", "model_overrides": {"target": "PD", "kl_weight": 0.01}, "epochs": 8,
            "batch_size": 8, "lr": 1e-3, "betas": [0.9, 0.999], "curriculum": "none", "crop": "brain",
            "skip_empty": True, "mixed_precision": "off", "seed": 2}


def _config(tmp_path, **changes) -> str:
    path = tmp_path / "vae.json"
    path.write_text(json.dumps({**SETTINGS, **changes}))
    return str(path)


@pytest.fixture(scope="module")
def vae_run(phantom_preprocessed, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vaeunet")
    return folder / "run", train_cli(phantom_preprocessed, folder / "run", config=_config(folder))


def test_it_trains_only_its_one_scenario(vae_run):
    run, summary = vae_run
    assert summary["scenarios"] == ["110"] and summary["pairing"] == "paired"
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert {"loss", "loss_l1", "loss_kl", "val_psnr"} <= history[-1].keys()
    assert history[-1]["loss_l1"] < history[0]["loss_l1"]


def test_trained_beats_untrained_on_held_out_subjects_after_export_and_import(vae_run, phantom_preprocessed, tmp_path):
    run, _ = vae_run
    info, model = exported_and_loaded(run, tmp_path / "bundle")
    assert info["model"]["family"] == "vaeunet" and info["model"]["target"] == "PD" and info["scenarios"] == ["110"]
    assert type(model.model_config) is VAEUNetConfig
    scores = trained_and_untrained_psnr(model, run, phantom_preprocessed)
    assert scores["trained"] > scores["untrained"] + 3.0, scores


def test_an_interrupted_and_resumed_run_equals_an_uninterrupted_one(phantom_preprocessed, tmp_path):
    from MRImputationLib.cli import main

    train_cli(phantom_preprocessed, tmp_path / "straight", config=_config(tmp_path, epochs=2, steps_per_epoch=3))
    split = str(tmp_path / "straight" / "split.json")
    train_cli(phantom_preprocessed, tmp_path / "resumed", "--split", split,
              config=_config(tmp_path, epochs=2, steps_per_epoch=3, stop_after_steps=4))
    assert main(["train", str(phantom_preprocessed), "--out", str(tmp_path / "resumed"), "--resume",
                 "--progress", "none"]) == 0
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)["vae"]
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)["vae"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the latent's noise included


def test_uncertainty_samples_the_latent_and_other_scenarios_are_refused(vae_run, phantom_preprocessed, tmp_path,
                                                                        capsys):
    import SimpleITK as sitk

    from MRImputationLib.cli import main

    run, _ = vae_run
    raw = phantom_preprocessed.parent / "raw" / "sub-000"
    inputs = ["--input", f"T1={raw / 'sub-000_T1.nii.gz'}", "--input", f"T2={raw / 'sub-000_T2.nii.gz'}"]
    assert main(["impute", "--model", str(run), *inputs, "--out", str(tmp_path / "out"), "--uncertainty", "3",
                 "--progress", "none"]) == 0
    spread = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "PD_uncertainty.nii.gz")))
    assert spread.max() > 0  # K latent samples differ
    assert main(["impute", "--model", str(run), inputs[0], inputs[1], "--out", str(tmp_path / "one"),
                 "--progress", "none"]) == 2
    assert "it serves: given T1, T2 -> synthesizing PD" in capsys.readouterr().err


def test_a_target_the_data_lacks_is_a_clear_error_before_training(phantom_preprocessed, tmp_path, capsys):
    from MRImputationLib.cli import main

    assert main(["train", str(phantom_preprocessed), "--out", str(tmp_path / "run"), "--config", "vae-unet-tiny",
                 "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert "target FLAIR is not among the contrasts T1, T2, PD" in err and "model_overrides" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_configuration_round_trips_and_the_kl_term_is_zero_at_the_prior():
    from MRImputationLib.core.errors import InputError
    from MRImputationLib.models.family import model_config_from_dict

    config = preset("vae-unet", 4)
    assert model_config_from_dict(config.to_dict()) == config and config.kl_weight > 0
    with pytest.raises(InputError, match="kl_weight"):
        model_config_from_dict({**config.to_dict(), "kl_weight": -1})
    assert float(kl_divergence(torch.zeros(2, 4), torch.zeros(2, 4))) == 0.0
    assert float(kl_divergence(torch.ones(2, 4), torch.zeros(2, 4))) == pytest.approx(0.5)
