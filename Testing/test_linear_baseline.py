"""The voxel-wise linear regression baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from MRImputationLib.core.errors import InputError
from MRImputationLib.models.linear import LinearImputer
from MRImputationLib.core.contrasts import IXI, Scenario


def linear_subject(seed, noise=0.0, shape=(4, 16, 16)):
    """T1, T2 random; PD = 0.2 + 0.5·T1 − 0.3·T2 (+ noise); mask = all but a border."""
    rng = np.random.default_rng(seed)
    t1, t2 = rng.uniform(0, 1, (2, *shape))
    pd = 0.2 + 0.5 * t1 - 0.3 * t2 + rng.normal(0, noise, shape) if noise else 0.2 + 0.5 * t1 - 0.3 * t2
    mask = np.zeros(shape, bool)
    mask[:, 2:-2, 2:-2] = True
    return np.stack([t1, t2, pd]).astype(np.float32), mask


def test_recovers_an_exactly_linear_relation():
    imputer = LinearImputer(IXI).fit([linear_subject(0), linear_subject(1)])
    entry = imputer.to_dict()["scenarios"]["110"]["PD"]
    assert entry["intercept"] == pytest.approx(0.2, abs=1e-5)
    assert entry["weights"] == pytest.approx({"T1": 0.5, "T2": -0.3}, abs=1e-5)
    stack, _ = linear_subject(5)
    predicted = imputer.predict(stack, Scenario("110"))
    np.testing.assert_allclose(predicted[2], stack[2], atol=1e-5)


def test_available_channels_pass_through_and_missing_inputs_are_never_read():
    imputer = LinearImputer(IXI).fit([linear_subject(0, noise=0.05)])
    stack, _ = linear_subject(3)
    scenario = Scenario("011")
    zeroed, garbage = stack.copy(), stack.copy()
    zeroed[0] = 0.0
    garbage[0] = 1e6
    out = imputer.predict(zeroed, scenario)
    assert out.shape == stack.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[1:], stack[1:])
    np.testing.assert_array_equal(out, imputer.predict(garbage, scenario))


def test_fit_is_deterministic_and_subsamples_voxels_by_seed():
    subjects = [linear_subject(0, noise=0.1), linear_subject(1, noise=0.1)]
    first = LinearImputer(IXI).fit(subjects, max_voxels_per_subject=100, seed=7).to_dict()
    second = LinearImputer(IXI).fit(iter(subjects), max_voxels_per_subject=100, seed=7).to_dict()
    other_seed = LinearImputer(IXI).fit(subjects, max_voxels_per_subject=100, seed=8).to_dict()
    assert first == second and first["n_voxels"] == 200
    assert first != other_seed


def test_coefficients_survive_a_json_round_trip():
    imputer = LinearImputer(IXI).fit([linear_subject(0, noise=0.05)])
    restored = LinearImputer.from_dict(json.loads(json.dumps(imputer.to_dict())))
    stack, _ = linear_subject(2)
    for scenario in IXI.scenarios():
        np.testing.assert_allclose(restored.predict(stack, scenario), imputer.predict(stack, scenario), rtol=1e-6)


def test_only_the_requested_scenarios_are_fitted_and_others_are_refused_by_name():
    imputer = LinearImputer(IXI).fit([linear_subject(0)], scenarios=[Scenario("110")])
    with pytest.raises(InputError, match="011.*110"):
        imputer.predict(linear_subject(1)[0], Scenario("011"))


def test_a_stack_with_the_wrong_number_of_contrasts_is_refused():
    with pytest.raises(InputError, match="C = 3"):
        LinearImputer(IXI).fit([(np.zeros((2, 4, 8, 8)), np.ones((4, 8, 8), bool))])


def test_the_fitted_statistics_round_trip_through_to_state_bit_for_bit():
    fitted = LinearImputer(IXI).fit([linear_subject(0, noise=0.05), linear_subject(1, noise=0.05)],
                                    scenarios=[Scenario("110"), Scenario("100")])
    arrays, metadata = fitted.to_state()
    assert set(arrays) == {"moments"} and arrays["moments"].dtype == np.float64
    assert all(isinstance(v, str) for v in metadata.values())
    restored = LinearImputer.from_state(arrays, metadata)
    assert set(restored.coefficients) == {"110", "100"}
    assert (restored.n_subjects, restored.n_voxels) == (fitted.n_subjects, fitted.n_voxels)
    stack, _ = linear_subject(5)
    for bits in ("110", "100"):
        assert np.array_equal(restored.predict(stack, Scenario(bits)), fitted.predict(stack, Scenario(bits)))


def test_a_state_that_is_not_a_baseline_is_refused_by_name():
    fitted = LinearImputer(IXI).fit([linear_subject(0)])
    arrays, metadata = fitted.to_state()
    with pytest.raises(InputError, match="my.safetensors: not a saved linear baseline"):
        LinearImputer.from_state(arrays, {**metadata, "format": "other"}, "my.safetensors")
    with pytest.raises(InputError, match="4x4 matrix"):
        LinearImputer.from_state({"moments": np.zeros((3, 3))}, metadata)
    with pytest.raises(InputError, match="fit it on training subjects first"):
        LinearImputer.from_dict(fitted.to_dict()).to_state()
