"""Test-time flips: averaging a slice's output with its mirror's makes imputation mirror-symmetric,
and a bundle exported with --flip-average imputes that way wherever it is loaded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from MRImputationLib.core.contrasts import Scenario
from MRImputationLib.core.errors import InputError
from MRImputationLib.imputation.slice_imputer import InferenceOptions, SliceImputer
from MRImputationLib.models.bundle import BundleInfo
from MRImputationLib.models.loading import load_model


def _imputer(model, flip: bool) -> SliceImputer:
    return SliceImputer(model.generator, model.model_config, model.slicing, InferenceOptions(flip_average=flip))


def test_flip_averaged_imputation_commutes_with_a_left_right_mirror(tiny_bundle):
    model = load_model(tiny_bundle)
    size = model.model_config.image_size
    slices = np.random.default_rng(0).uniform(0, 1, (3, 3, size, size)).astype(np.float32)
    scenario = Scenario("101")
    plain, flipped = _imputer(model, False), _imputer(model, True)
    mirror = slices[..., ::-1].copy()
    # The network alone is not mirror-symmetric; averaged with its mirror it is.
    assert not np.allclose(plain.predict_slices(mirror, scenario)[..., ::-1], plain.predict_slices(slices, scenario),
                           atol=1e-4)
    np.testing.assert_allclose(flipped.predict_slices(mirror, scenario)[..., ::-1],
                               flipped.predict_slices(slices, scenario), atol=1e-5)
    # The given channels stay exactly the given ones.
    assert np.array_equal(flipped.predict_slices(slices, scenario)[:, [0, 2]], slices[:, [0, 2]])


def test_a_bundle_exported_with_flip_average_says_so_and_loads_with_it(tiny_bundle, tmp_path):
    from MRImputationLib.cli import main

    run = tiny_bundle.parent / "run"
    assert main(["export", str(run), str(tmp_path / "flipped"), "--flip-average", "--progress", "none"]) == 0
    assert json.loads((tmp_path / "flipped" / "bundle.json").read_text())["inference"] == {"flip_average": True}
    assert load_model(tmp_path / "flipped").flip_average and not load_model(tiny_bundle).flip_average


def test_a_bundle_with_an_unknown_inference_setting_is_refused():
    info = json.loads(json.dumps(dict(name="m", version="1", contrasts=["T1", "T2", "PD"], reference="T1",
                                      normalization={}, preprocessing={}, model={"name": "tiny", "contrasts": 3})))
    BundleInfo.from_dict({**info, "inference": {"flip_average": False}})
    with pytest.raises(InputError, match="inference"):
        BundleInfo.from_dict({**info, "inference": {"mirror": True}})
