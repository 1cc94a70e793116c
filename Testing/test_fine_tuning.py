"""Fine-tuning: a run that starts from another run's networks, and plain-regression steps (no adversary)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from MRImputationLib.core.errors import InputError
from MRImputationLib.models.mmgan.training_step import pixel_loss_on_missing
from MRImputationLib.training.config import TrainConfig

SETTINGS = {"model": "tiny", "epochs": 1, "batch_size": 8, "lr": 1e-3, "curriculum": "none", "crop": "brain",
            "skip_empty": True, "mixed_precision": "off", "steps_per_epoch": 2, "seed": 3}


def _train(data: Path, out: Path, settings: dict, tmp_path: Path, *extra: str) -> int:
    from MRImputationLib.cli import main

    config = tmp_path / f"{out.name}.json"
    config.write_text(json.dumps(settings))
    return main(["train", str(data), "--out", str(out), "--config", str(config), "--progress", "none", *extra])


def _checkpoint(run: Path, name: str = "last.pt") -> dict:
    return torch.load(run / "checkpoints" / name, weights_only=True)


def test_the_mse_pixel_loss_squares_the_error_on_missing_channels_only():
    real = torch.rand(2, 3, 8, 8)
    fake = real.clone()
    fake[:, 0] += 2.0
    assert pixel_loss_on_missing(fake, real, torch.tensor([[0.0, 1.0, 1.0]] * 2), kind="mse").item() == pytest.approx(4.0)
    assert pixel_loss_on_missing(fake, real, torch.tensor([[0.0, 1.0, 1.0]] * 2), kind="l1").item() == pytest.approx(2.0)
    assert pixel_loss_on_missing(fake, real, torch.tensor([[1.0, 0.0, 1.0]] * 2), kind="mse").item() == 0.0


def test_unknown_pixel_losses_and_empty_sources_are_refused():
    with pytest.raises(InputError, match="pixel_loss"):
        TrainConfig(pixel_loss="l3")
    with pytest.raises(InputError, match="init_from"):
        TrainConfig(init_from="")


def test_a_fine_tuning_run_starts_from_the_source_runs_best_generator_and_trains_no_adversary(
        phantom_preprocessed, tmp_path):
    source = tmp_path / "source"
    assert _train(phantom_preprocessed, source, SETTINGS, tmp_path) == 0
    tuned = tmp_path / "tuned"
    # A learning rate of 1e-12: after one step the generator is still the source's to float precision.
    settings = {**SETTINGS, "init_from": str(source), "lr": 1e-12, "lambda_adversarial": 0.0, "lambda_l1": 1.0,
                "pixel_loss": "mse", "steps_per_epoch": 1}
    assert _train(phantom_preprocessed, tuned, settings, tmp_path, "--split", str(source / "split.json")) == 0
    best, fresh = _checkpoint(source, "best.pt")["generator"], tmp_path / "fresh"
    started = _checkpoint(tuned)["generator"]
    assert all(torch.allclose(best[k].float(), started[k].float(), atol=1e-6) for k in best)
    assert _train(phantom_preprocessed, fresh, {**settings, "init_from": None}, tmp_path,
                  "--split", str(source / "split.json")) == 0
    assert not all(torch.allclose(best[k].float(), _checkpoint(fresh)["generator"][k].float(), atol=1e-6)
                   for k in best if k.endswith("weight"))
    # No adversary: the discriminator is the source's, untouched, and the history has no D loss.
    source_d, tuned_d = _checkpoint(source)["discriminator"], _checkpoint(tuned)["discriminator"]
    assert all(torch.equal(source_d[k], tuned_d[k]) for k in source_d)
    record = [json.loads(line) for line in (tuned / "history.jsonl").read_text().splitlines()][-1]
    assert "loss_d" not in record and record["loss_l1"] > 0


def test_a_source_with_another_network_is_refused_with_its_name(phantom_preprocessed, tmp_path, capsys):
    source = tmp_path / "source"
    assert _train(phantom_preprocessed, source, SETTINGS, tmp_path) == 0
    other = {**SETTINGS, "model_overrides": {"generator": {"base_width": 4}}, "init_from": str(source)}
    assert _train(phantom_preprocessed, tmp_path / "tuned", other, tmp_path) == 2
    err = capsys.readouterr().err
    assert "init_from" in err and str(source) in err and "same" in err
    assert not (tmp_path / "tuned" / "cache").exists()  # refused before a slice was cached
    not_a_run = {**SETTINGS, "init_from": str(tmp_path / "nowhere")}
    assert _train(phantom_preprocessed, tmp_path / "tuned2", not_a_run, tmp_path) == 2
    assert "not a training run folder" in capsys.readouterr().err
