"""MM-GAN training: implicit conditioning, losses, curriculum, exact resume, DDP in sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from MRImputationLib.training.curriculum import Curriculum
from MRImputationLib.core.contrasts import BRATS, IXI, Scenario
from MRImputationLib.models.mmgan.config import preset
from MRImputationLib.models.mmgan.conditioning import generator_input
from MRImputationLib.models.mmgan.training_step import fake_targets, pixel_loss_on_missing


@pytest.fixture
def preprocessed(phantom_preprocessed) -> Path:
    """Six aligned phantom subjects, preprocessed without N4/registration (conftest; shared, read only)."""
    return phantom_preprocessed


def _train(data: Path, out: Path, *extra: str, config: str = "tiny") -> dict:
    from MRImputationLib.cli import main

    code = main(["train", str(data), "--out", str(out), "--config", config, "--progress", "none", *extra])
    assert code == 0
    return json.loads((out / "summary.json").read_text())


def _weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["generator"]


def test_l1_counts_only_the_missing_channels():
    real = torch.rand(2, 3, 8, 8)
    fake = real.clone()
    fake[:, 0] += 1.0  # wrong on channel 0 only
    available = torch.tensor([[0.0, 1.0, 1.0]] * 2)
    assert pixel_loss_on_missing(fake, real, available).item() == pytest.approx(1.0)
    available = torch.tensor([[1.0, 0.0, 1.0]] * 2)
    assert pixel_loss_on_missing(fake, real, available).item() == pytest.approx(0.0)


def test_missing_inputs_are_zeros_and_fake_targets_mark_real_copies():
    real = torch.rand(2, 3, 8, 8) + 0.1
    available = torch.tensor([[1.0, 0.0, 1.0]] * 2)
    x = generator_input(real, available, preset("tiny", 3))
    assert torch.all(x[:, 1] == 0) and torch.equal(x[:, 0], real[:, 0])
    targets = fake_targets(available, torch.Size([2, 3, 4, 4]), preset("tiny", 3))
    assert torch.all(targets[:, 1] == 0) and torch.all(targets[:, [0, 2]] == 1)


def test_mmgan_curriculum_for_brats_matches_the_authors_schedule():
    c = Curriculum.preset("mmgan", BRATS)
    counts = [len(c.scenarios_at(e, 60, BRATS)) for e in (0, 10, 11, 20, 21, 30, 31)]
    assert counts == [4, 4, 7, 7, 11, 11, 14]
    assert all(s.n_missing == 1 for s in c.scenarios_at(0, 60, BRATS))


def test_scenarios_drawn_early_in_training_are_the_easy_ones(preprocessed, tmp_path):
    from MRImputationLib.training.distributed import DistributedContext
    from MRImputationLib.models.slicing import SlicingConfig
    from MRImputationLib.training.slice_cache import SliceDataset, build_cache
    from MRImputationLib.training.trainer import Trainer
    from MRImputationLib.training.config import train_preset

    config = train_preset("tiny", curriculum="mmgan", epochs=60)
    build_cache(preprocessed, IXI, tmp_path / "cache", SlicingConfig(size=32))
    dataset = SliceDataset(tmp_path / "cache", ["sub-000"])
    trainer = Trainer(config, preset("tiny", 3), IXI, dataset, tmp_path, DistributedContext())
    early = {trainer.scenario_for(0, s).bits for s in range(50)}
    late = {trainer.scenario_for(59, s).bits for s in range(200)}
    assert early == {"110", "101", "011"}
    assert late == {s.bits for s in IXI.scenarios()}


class _VoxelConfig:
    """The typed configuration of `_VoxelFamily` (a family made in this test, not in the Lib)."""

    family = "voxel-test"

    def __init__(self, name: str = "voxel", contrasts: int = 3, image_size: int = 32) -> None:
        self.name, self.contrasts, self.image_size = name, contrasts, image_size

    def to_dict(self) -> dict:
        return {"family": self.family, "name": self.name, "contrasts": self.contrasts, "image_size": self.image_size}

    def __eq__(self, other) -> bool:
        return isinstance(other, _VoxelConfig) and self.to_dict() == other.to_dict()


class _VoxelStep:
    headline = (("loss_l1", "L1"),)

    def __init__(self, family, config, settings, networks) -> None:
        self.family, self.config, self.mapper = family, config, networks.trained["mapper"]
        self.optimizers = {"mapper": torch.optim.Adam(networks.built["mapper"].parameters(), lr=settings.lr)}
        self.began_with = None

    def begin_run(self, dataset, contrasts) -> None:
        self.began_with = len(dataset)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state) -> None:
        pass

    def __call__(self, real, available, present=None) -> dict:
        fake = self.mapper(self.family.generator_input(self.config, real, available))
        loss = ((fake - real).abs() * (1 - available)[:, :, None, None]).mean()
        self.optimizers["mapper"].zero_grad()
        loss.backward()
        self.optimizers["mapper"].step()
        return {"loss_l1": loss.item()}


class _VoxelFamily:
    """A voxel-wise 1x1 conv from the zero-imputed contrasts and their mask, trained with L1 on the missing ones."""

    name, inference_network, preset_names, pairing = "voxel-test", "mapper", (), "paired"

    def scenarios(self, config, contrasts):
        return contrasts.scenarios()

    def config_from_dict(self, data):
        return _VoxelConfig(**{k: v for k, v in data.items() if k != "family"})

    def preset(self, name, contrasts):
        raise AssertionError("no presets")

    def build_networks(self, config):
        return {"mapper": torch.nn.Conv2d(2 * config.contrasts, config.contrasts, 1)}

    def build_inference_network(self, config):
        return self.build_networks(config)["mapper"]

    def generator_input(self, config, real, available):
        mask = available[:, :, None, None].to(real.dtype).expand_as(real)
        return torch.cat((real * mask, mask), dim=1)

    def impute_batch(self, config, network, real, available, execution):
        with execution.autocast():
            fake = network(execution.layout(self.generator_input(config, real, available)))
        return torch.where(available[:, :, None, None].bool(), real, fake.float())

    def training_step(self, config, settings, networks, execution):
        return _VoxelStep(self, config, settings, networks)


def test_a_new_model_family_trains_checkpoints_and_imputes_through_the_protocol_alone(preprocessed, tmp_path, monkeypatch):
    """The seam: a family the Lib has never seen runs through the trainer, checkpoints, loading and
    the imputer with no change to them (its networks and optimizers named as it declares them)."""
    from MRImputationLib.core.contrasts import Scenario
    from MRImputationLib.imputation.slice_imputer import SliceImputer
    from MRImputationLib.models import family
    from MRImputationLib.models.loading import build_generator_for
    from MRImputationLib.models.slicing import SlicingConfig
    from MRImputationLib.training.config import train_preset
    from MRImputationLib.training.distributed import DistributedContext
    from MRImputationLib.training.slice_cache import SliceDataset, build_cache
    from MRImputationLib.training.trainer import Trainer

    monkeypatch.setitem(family._registered, "voxel-test", _VoxelFamily())
    config = family.model_config_from_dict({"family": "voxel-test", "name": "voxel", "contrasts": 3, "image_size": 32})
    assert config == _VoxelConfig()
    build_cache(preprocessed, IXI, tmp_path / "cache", SlicingConfig(size=32))
    dataset = SliceDataset(tmp_path / "cache", ["sub-000"])
    trainer = Trainer(train_preset("tiny", epochs=2, steps_per_epoch=2), config, IXI, dataset, tmp_path / "run",
                      DistributedContext())
    summary = trainer.fit()
    assert summary["finished"] and summary["global_step"] == 4 and trainer.training_step.began_with == len(dataset)
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert {"mapper", "opt_mapper", "sched_mapper"} <= checkpoint.keys() and "generator" not in checkpoint
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [sorted(r) for r in history][0] == ["epoch", "loss_l1", "lr", "seconds", "slices_per_s"]
    network = build_generator_for(config)
    network.load_state_dict(checkpoint["mapper"])
    slices = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    imputed = SliceImputer(network, config, SlicingConfig(size=32)).predict_slices(slices, Scenario("101"))
    assert imputed.shape == slices.shape and np.array_equal(imputed[:, [0, 2]], slices[:, [0, 2]])


def test_an_interrupted_and_resumed_run_equals_an_uninterrupted_one(preprocessed, tmp_path):
    common = ["--epochs", "2", "--steps-per-epoch", "4", "--seed", "5"]
    _train(preprocessed, tmp_path / "straight", *common)
    split = tmp_path / "straight" / "split.json"
    from MRImputationLib.cli import main

    # Stop mid-epoch (after 3 of 4 steps), then continue.
    config = tmp_path / "stop.json"
    config.write_text(json.dumps({"model": "tiny", "epochs": 2, "batch_size": 8, "lr": 1e-3, "curriculum": "none",
                                  "crop": "brain", "skip_empty": True, "mixed_precision": "off", "steps_per_epoch": 4,
                                  "seed": 5, "stop_after_steps": 3}))
    assert main(["train", str(preprocessed), "--out", str(tmp_path / "resumed"), "--config", str(config),
                 "--split", str(split), "--progress", "none"]) == 0
    first = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert first["stopped_early"] and first["global_step"] == 3
    assert main(["train", str(preprocessed), "--out", str(tmp_path / "resumed"), "--resume", "--progress", "none"]) == 0
    final = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert final["finished"] and final["global_step"] == 8
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_a_resumed_run_with_the_linear_and_voxel_paths_equals_an_uninterrupted_one(preprocessed, tmp_path):
    """The linear path is fitted once when a run starts and comes back from the checkpoint on
    --resume; the voxel path's weights and Adam moments resume like the U-Net's."""
    from MRImputationLib.cli import main

    settings = {"model": "tiny", "model_overrides": {"generator": {"linear_path": True, "voxel_path_width": 8}},
                "epochs": 2, "batch_size": 8, "lr": 1e-3, "curriculum": "none", "crop": "brain", "skip_empty": True,
                "mixed_precision": "off", "steps_per_epoch": 4, "seed": 5}
    straight, stop = tmp_path / "straight.json", tmp_path / "stop.json"
    straight.write_text(json.dumps(settings))
    stop.write_text(json.dumps({**settings, "stop_after_steps": 3}))
    _train(preprocessed, tmp_path / "straight", config=str(straight))
    split = tmp_path / "straight" / "split.json"
    assert main(["train", str(preprocessed), "--out", str(tmp_path / "resumed"), "--config", str(stop),
                 "--split", str(split), "--progress", "none"]) == 0
    assert main(["train", str(preprocessed), "--out", str(tmp_path / "resumed"), "--resume", "--progress", "none"]) == 0
    assert json.loads((tmp_path / "resumed" / "summary.json").read_text())["global_step"] == 8
    straight_weights, resumed_weights = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert straight_weights.keys() == resumed_weights.keys()
    assert {"linear_path.weight", "voxel_path.mlp.4.weight"} <= straight_weights.keys()
    assert all(torch.equal(straight_weights[k], resumed_weights[k]) for k in straight_weights)


def test_training_into_a_finished_run_without_resume_is_refused(preprocessed, tmp_path, capsys):
    """A second `train` into the same folder would mix two runs' histories and checkpoints."""
    from MRImputationLib.cli import main

    _train(preprocessed, tmp_path / "run", "--epochs", "1", "--steps-per-epoch", "1")
    history = (tmp_path / "run" / "history.jsonl").read_text()
    assert main(["train", str(preprocessed), "--out", str(tmp_path / "run"), "--config", "tiny",
                 "--progress", "none"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (tmp_path / "run" / "history.jsonl").read_text() == history


def test_threads_and_precision_are_chosen_logged_and_summarised(preprocessed, tmp_path, capsys):
    before = torch.get_num_threads()
    summary = _train(preprocessed, tmp_path / "run", "--epochs", "1", "--steps-per-epoch", "2", "--threads", "2")
    assert summary["threads"] == 2 and summary["precision"] == "fp32" and summary["slices_per_s"] > 0
    log = capsys.readouterr().err
    assert "2 CPU thread(s) (as asked)" in log and "slices/s (fp32, 2 thread(s))" in log
    assert torch.get_num_threads() == before  # the caller's thread count comes back
    assert json.loads((tmp_path / "run" / "config.json").read_text())["threads"] == 2
    from MRImputationLib.cli import main

    assert main(["train", str(preprocessed), "--out", str(tmp_path / "bad"), "--config", "tiny", "--threads", "0",
                 "--progress", "none"]) == 2
    assert "--threads 0" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_resume_without_a_run_is_a_clear_error(preprocessed, tmp_path):
    from MRImputationLib.cli import main

    assert main(["train", str(preprocessed), "--out", str(tmp_path / "none"), "--config", "tiny", "--resume",
                 "--progress", "none"]) == 2


def test_two_cpu_processes_under_torchrun_stay_in_sync(preprocessed, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "MRImputation"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
               "-m", "MRImputationLib", "train", str(preprocessed), "--out", str(tmp_path / "ddp"),
               "--config", "tiny", "--epochs", "1", "--steps-per-epoch", "3", "--device", "cpu", "--progress", "none"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_in_sync"] is True
    assert summary["global_step"] == 3


def test_short_training_beats_the_untrained_network_in_every_scenario(tiny_bundle, tmp_path):
    """Evidence that training learns: a held-out phantom subject, every scenario, a 1 dB margin.

    (Against voxel-wise linear regression: `test_phantom_evidence.py` and the README's "MM-GAN
    against linear regression on the phantom".)
    """
    from MRImputationLib.evaluation.harness import EvalSubject, evaluate
    from MRImputationLib.imputation.slice_imputer import SliceImputer
    from MRImputationLib.preprocessing.masking import brain_mask
    from MRImputationLib.models.loading import load_model
    from MRImputationLib.models.mmgan.networks import build_generator
    from MRImputationLib.preprocessing.normalization import NormalizationConfig, fit_normalization, normalize
    from MRImputationLib.data.phantom import PhantomConfig, make_subject

    model = load_model(tiny_bundle)
    subject = make_subject(PhantomConfig(shape=(48, 48, 32), misalignment="none", bias_strength=0.05), seed=901)
    volumes = [subject.observed[n] for n in model.contrasts.names]
    mask = brain_mask(volumes)
    params = [fit_normalization(v, mask, NormalizationConfig()) for v in volumes]
    stack = np.stack([normalize(v, p).array for v, p in zip(volumes, params)])
    held_out = EvalSubject("sub-901", stack, mask.array > 0,
                           lambda c, a: a * params[c].scale + params[c].offset, frame=volumes[0])
    torch.manual_seed(0)
    trained = SliceImputer(model.generator, model.model_config, model.slicing, name="trained")
    untrained = SliceImputer(build_generator(model.model_config), model.model_config, model.slicing, name="untrained")
    summary = evaluate([trained, untrained], [held_out], model.contrasts, keep_examples=0).summary()
    cells = {(r["method"], r["scenario"], r["contrast"]): r["psnr_mean"] for r in summary if r["scenario"] != "overall"}
    for (method, scenario, contrast), psnr in cells.items():
        if method == "trained":
            assert psnr > cells[("untrained", scenario, contrast)] + 1.0, (scenario, contrast)


def test_the_linear_path_holds_the_linear_baseline_of_the_training_slices_and_stays_fixed(preprocessed, tmp_path):
    """With `"linear_path": true` the generator starts from voxel-wise least squares on the training
    subjects' slices (the linear baseline), only the U-Net trains, and the bundle keeps the path."""
    from MRImputationLib.models.linear import LinearImputer
    from MRImputationLib.training.slice_cache import SliceDataset
    from MRImputationLib.data.splits import Split

    config = tmp_path / "path.json"
    config.write_text(json.dumps({"model": "tiny", "model_overrides": {"generator": {"linear_path": True}},
                                  "epochs": 1, "steps_per_epoch": 3, "batch_size": 8, "lr": 1e-3,
                                  "curriculum": "none", "crop": "brain", "skip_empty": True,
                                  "mixed_precision": "off"}))
    run = tmp_path / "run"
    assert _train(preprocessed, run, config=str(config))["global_step"] == 3
    weights = _weights(run)
    train_slices = SliceDataset(run / "cache", Split.load(run / "split.json").train)
    baseline = LinearImputer(IXI).fit(train_slices.subject_stacks())
    assert len(baseline.coefficients) == 6
    fitted = []
    for bits, solved in baseline.coefficients.items():
        mask = Scenario(bits).mask
        pattern, given = sum(2**i for i, g in enumerate(mask) if g), [i for i, g in enumerate(mask) if g]
        for target, (intercept, coefficients) in solved.items():
            np.testing.assert_allclose(weights["linear_path.weight"][pattern, target, given].numpy(), coefficients, rtol=1e-5)
            assert float(weights["linear_path.bias"][pattern, target]) == pytest.approx(intercept, rel=1e-5, abs=1e-6)
            fitted.extend(np.abs(coefficients))
    assert max(fitted) > 0.5  # a real fit, not the zero start

    from MRImputationLib.pipelines.export import export_run
    from MRImputationLib.models.loading import load_model

    bundled = load_model(export_run(run, tmp_path / "bundle")).generator.linear_path
    assert torch.equal(bundled.weight, weights["linear_path.weight"]) and torch.equal(bundled.bias, weights["linear_path.bias"])


def test_the_voxel_path_starts_at_zero_trains_with_the_generator_and_survives_export(preprocessed, tmp_path):
    from MRImputationLib.pipelines.export import export_run
    from MRImputationLib.models.loading import load_model

    config = tmp_path / "voxel.json"
    config.write_text(json.dumps({"model": "tiny", "model_overrides": {"generator": {"voxel_path_width": 8}},
                                  "epochs": 1, "steps_per_epoch": 3, "batch_size": 8, "lr": 1e-3,
                                  "curriculum": "none", "crop": "brain", "skip_empty": True,
                                  "mixed_precision": "off"}))
    run = tmp_path / "run"
    _train(preprocessed, run, config=str(config))
    weights = _weights(run)
    output_layer = weights["voxel_path.mlp.4.weight"]
    assert output_layer.shape == (3, 8, 1, 1) and output_layer.abs().max() > 0  # built at zero, moved by training
    bundled = load_model(export_run(run, tmp_path / "bundle")).generator.voxel_path.state_dict()
    for name, tensor in bundled.items():
        assert torch.equal(tensor, weights[f"voxel_path.{name}"]), name


def test_a_bundle_says_the_epochs_the_run_finished_even_when_its_summary_is_from_an_earlier_call(preprocessed,
                                                                                                  tmp_path):
    """A run stopped by a signal after resuming writes no summary.json: the bundle takes its epochs from the
    history, not from the summary the earlier call left."""
    from MRImputationLib.cli import main

    _train(preprocessed, tmp_path / "run", "--epochs", "2", "--steps-per-epoch", "2")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (tmp_path / "run" / "summary.json").write_text(json.dumps({**summary, "epochs_done": 1}))  # an earlier call's
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "bundle"), "--no-baseline"]) == 0
    assert json.loads((tmp_path / "bundle" / "bundle.json").read_text())["training"]["epochs_done"] == 2
