"""Model bundles: writing, zipping, verifying and loading without pickle."""

from __future__ import annotations

import doctest
import json
import zipfile

import pytest

torch = pytest.importorskip("torch")

from MRImputationLib.models import bundle as bundle_module  # noqa: E402
from MRImputationLib.models.bundle import (  # noqa: E402
    BUNDLE_FORMAT,
    BundleInfo,
    load_bundle,
    read_bundle_info,
    write_bundle,
    zip_bundle,
)
from MRImputationLib.core.errors import InputError  # noqa: E402
from MRImputationLib.models.mmgan.config import preset  # noqa: E402
from MRImputationLib.models.mmgan.networks import build_discriminator, build_generator  # noqa: E402


def make_info(**changes) -> BundleInfo:
    values = dict(
        name="tiny-ixi",
        version="0.1",
        contrasts=["T1", "T2", "PD"],
        reference="PD",
        normalization={"method": "percentile", "lower_percentile": 0.5, "upper_percentile": 99.5},
        preprocessing={"n4": True, "registration": "rigid"},
        model=preset("tiny", 3).to_dict(),
        training={"subjects": 2, "epochs": 1},
        metrics={"psnr": 20.0},
        scenarios=["110", "101", "011"],
        intended_use="tests only",
        license="Apache-2.0",
    )
    values.update(changes)
    return BundleInfo(**values)


@pytest.fixture(scope="module")
def networks():
    torch.manual_seed(0)
    config = preset("tiny", 3)
    return build_generator(config), build_discriminator(config)


@pytest.fixture()
def bundle_folder(tmp_path, networks):
    generator, discriminator = networks
    return write_bundle(tmp_path / "model", make_info(),
                        {"generator": generator.state_dict(), "discriminator": discriminator.state_dict()})


def assert_same_weights(loaded: dict, state: dict) -> None:
    assert set(loaded) == set(state)
    for key, tensor in state.items():
        assert torch.equal(loaded[key], tensor), key


def test_docstring_examples_run():
    assert doctest.testmod(bundle_module).failed == 0


def test_bundle_round_trip_keeps_description_and_weights(bundle_folder, networks):
    generator, discriminator = networks
    document = json.loads((bundle_folder / "bundle.json").read_text())
    assert document["format_version"] == BUNDLE_FORMAT
    assert set(document["files"]) == {"generator.safetensors", "discriminator.safetensors"}
    bundle = load_bundle(bundle_folder)
    assert bundle.info == make_info()
    assert_same_weights(bundle.weights["generator"], generator.state_dict())
    assert_same_weights(bundle.weights["discriminator"], discriminator.state_dict())
    rebuilt = build_generator(bundle.info.model_config())
    rebuilt.load_state_dict(bundle.weights["generator"])
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), generator.eval()(x))


def test_reading_the_description_needs_no_weights_loaded(bundle_folder):
    info, document = read_bundle_info(bundle_folder)
    assert info.contrasts == ["T1", "T2", "PD"] and info.reference == "PD"
    assert len(document["files"]["generator.safetensors"]["sha256"]) == 64


def test_reading_the_description_works_without_torch(bundle_folder):
    import subprocess
    import sys
    from pathlib import Path

    library = Path(bundle_module.__file__).resolve().parents[1]
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['safetensors'] = None; "
        f"sys.path.insert(0, {str(library)!r}); "
        "from MRImputationLib.models.bundle import read_bundle_info; "
        f"print(read_bundle_info({str(bundle_folder)!r})[0].name)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tiny-ixi"


def test_flipped_byte_in_weights_is_refused_naming_the_file(bundle_folder):
    weights = bundle_folder / "generator.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"generator\.safetensors.*corrupted or modified"):
        load_bundle(bundle_folder)
    assert "generator" in load_bundle(bundle_folder, verify=False).weights


def test_missing_weights_file_is_refused(bundle_folder):
    (bundle_folder / "discriminator.safetensors").unlink()
    with pytest.raises(InputError, match="discriminator.safetensors is missing"):
        load_bundle(bundle_folder)


@pytest.mark.parametrize("version", [BUNDLE_FORMAT + 1, 0, "1", None])
def test_newer_or_unknown_format_version_is_refused(bundle_folder, version):
    path = bundle_folder / "bundle.json"
    document = json.loads(path.read_text())
    document["format_version"] = version
    path.write_text(json.dumps(document))
    expected = "newer MRImputation; update" if version == BUNDLE_FORMAT + 1 else "format_version"
    with pytest.raises(InputError, match=expected):
        read_bundle_info(bundle_folder)
    with pytest.raises(InputError, match=expected):
        load_bundle(bundle_folder)


def test_zip_round_trip(bundle_folder, tmp_path, networks):
    archive = zip_bundle(bundle_folder, tmp_path / "model.zip")
    info, _ = read_bundle_info(archive)
    assert info == make_info()
    bundle = load_bundle(archive)
    assert bundle.source == archive
    assert_same_weights(bundle.weights["generator"], networks[0].state_dict())


def test_zip_with_bundle_inside_one_top_level_folder_loads(bundle_folder, tmp_path):
    archive = tmp_path / "nested.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in bundle_folder.iterdir():
            zf.write(file, f"model/{file.name}")
    assert "generator" in load_bundle(archive).weights


def test_zip_with_path_traversal_member_is_refused(bundle_folder, tmp_path):
    archive = zip_bundle(bundle_folder, tmp_path / "evil.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../evil", b"owned")
    with pytest.raises(InputError, match="unsafe member name"):
        load_bundle(archive)
    with pytest.raises(InputError, match="unsafe member name"):
        read_bundle_info(archive)
    assert not (tmp_path.parent / "evil").exists()


def test_weights_file_names_cannot_leave_the_bundle(bundle_folder):
    path = bundle_folder / "bundle.json"
    document = json.loads(path.read_text())
    document["files"]["../generator.safetensors"] = document["files"].pop("generator.safetensors")
    path.write_text(json.dumps(document))
    with pytest.raises(InputError, match="not allowed"):
        load_bundle(bundle_folder)


def test_loading_never_unpickles(bundle_folder, monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("a bundle must never be unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    assert "generator" in load_bundle(bundle_folder).weights


def test_rewriting_a_bundle_replaces_it_whole(bundle_folder, networks):
    write_bundle(bundle_folder, make_info(version="0.2"), {"generator": networks[0].state_dict()})
    info, document = read_bundle_info(bundle_folder)
    assert info.version == "0.2" and set(document["files"]) == {"generator.safetensors"}
    assert not (bundle_folder / "discriminator.safetensors").exists()


def test_inconsistent_descriptions_are_refused(tmp_path, networks):
    state = {"generator": networks[0].state_dict()}
    with pytest.raises(InputError, match="reference contrast"):
        write_bundle(tmp_path / "a", make_info(reference="FLAIR"), state)
    with pytest.raises(InputError, match="4 channels but 3 contrasts"):
        write_bundle(tmp_path / "b", make_info(model=preset("tiny", 4).to_dict()), state)
    with pytest.raises(InputError, match="bit string"):
        write_bundle(tmp_path / "c", make_info(scenarios=["11"]), state)
    assert not any(tmp_path.iterdir())


def test_a_folder_without_bundle_json_is_not_a_bundle(tmp_path):
    with pytest.raises(InputError, match="not a model bundle"):
        read_bundle_info(tmp_path)
    with pytest.raises(InputError, match="no such model bundle"):
        load_bundle(tmp_path / "absent")


def _baseline(contrasts=("T1", "T2", "PD"), reference="PD"):
    import numpy as np

    from MRImputationLib.core.contrasts import ContrastSet
    from MRImputationLib.models.linear import LinearImputer

    rng = np.random.default_rng(3)
    stack = rng.uniform(0, 1, (len(contrasts), 4, 8, 8))
    return LinearImputer(ContrastSet(tuple(contrasts), reference)).fit([(stack, np.ones((4, 8, 8), bool))])


def test_half_weights_take_half_the_space_and_load_as_float32(tmp_path, networks):
    generator, _ = networks
    full = write_bundle(tmp_path / "full", make_info(), {"generator": generator.state_dict()})
    half = write_bundle(tmp_path / "half", make_info(), {"generator": generator.state_dict()}, half=True)
    size = lambda folder: (folder / "generator.safetensors").stat().st_size  # noqa: E731
    assert size(half) < 0.55 * size(full)
    assert json.loads((half / "bundle.json").read_text())["weights_dtype"] == "float16"
    loaded = load_bundle(half).weights["generator"]
    for key, tensor in generator.state_dict().items():
        assert loaded[key].dtype == tensor.dtype, key
        if tensor.is_floating_point():
            assert torch.allclose(loaded[key], tensor, rtol=1e-3, atol=1e-4), key


def test_weights_beyond_the_float16_range_are_refused_with_half(tmp_path):
    with pytest.raises(InputError, match="export without --half"):
        write_bundle(tmp_path / "b", make_info(), {"generator": {"w": torch.tensor([1e6])}}, half=True)


def test_the_baseline_is_listed_hashed_and_read_back_apart_from_the_weights(tmp_path, networks):
    from MRImputationLib.models.bundle import BASELINE_FILE, read_baseline
    from MRImputationLib.models.store import verify_bundle

    generator, _ = networks
    baseline = _baseline()
    folder = write_bundle(tmp_path / "b", make_info(), {"generator": generator.state_dict()}, baseline=baseline)
    document = json.loads((folder / "bundle.json").read_text())
    assert BASELINE_FILE in document["files"] and document["baseline"]["n_subjects"] == 1
    assert read_bundle_info(folder)[0].baseline["file"] == BASELINE_FILE
    assert set(load_bundle(folder).weights) == {"generator"}
    restored = read_baseline(folder)
    assert restored.n_voxels == baseline.n_voxels and restored.coefficients.keys() == baseline.coefficients.keys()
    assert read_baseline(zip_bundle(folder, tmp_path / "b.zip")).n_voxels == baseline.n_voxels
    verify_bundle(folder)
    data = bytearray((folder / BASELINE_FILE).read_bytes())
    data[-1] ^= 0xFF
    (folder / BASELINE_FILE).write_bytes(bytes(data))
    with pytest.raises(InputError, match="baseline.safetensors is corrupted or modified"):
        read_baseline(folder)
    with pytest.raises(InputError, match="baseline.safetensors is corrupted"):
        verify_bundle(folder)


def test_a_bundle_without_baseline_has_none_and_a_mismatched_one_is_refused(bundle_folder, tmp_path, networks):
    from MRImputationLib.models.bundle import read_baseline

    assert read_baseline(bundle_folder) is None and read_bundle_info(bundle_folder)[0].baseline == {}
    with pytest.raises(InputError, match="fitted on T1, T2, FLAIR"):
        write_bundle(tmp_path / "b", make_info(), {"generator": networks[0].state_dict()},
                     baseline=_baseline(("T1", "T2", "FLAIR"), "T1"))
