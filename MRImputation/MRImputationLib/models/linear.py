"""The first baseline of EVALUATION.md: voxel-wise linear regression from the given contrasts.

Fitting streams over the training subjects once and keeps only the second-moment matrix of
[1, c_1, ..., c_N] over the sampled brain voxels; every scenario's least-squares problem is a
sub-block of it, so all 2^N − 2 scenarios are fitted from one pass without holding voxels. Subjects
that lack some contrasts keep their own matrix per presence pattern: a scenario's regression onto
one missing contrast sums the patterns that have its inputs and that contrast.
`to_state`/`from_state` save and restore that matrix: a bundle carries the baseline fitted on its
model's training data as `baseline.safetensors` (models/bundle.py).
"""

from __future__ import annotations

import json
from typing import Iterable, Sequence

import numpy as np

from ..core.contrasts import ContrastSet, Scenario
from ..core.errors import InputError

FORMAT = "mrimputation-linear-baseline/1"
STATE_FORMAT = "mrimputation-linear-baseline-state/1"  # to_state: what a bundle's baseline.safetensors holds


class LinearImputer:
    """Per scenario, least squares from the available contrasts (+ intercept) to each missing one,
    fitted on mask voxels of the training subjects, in normalized units.

    `predict` follows implicit conditioning: available channels are copied from the input, missing
    ones are predicted; what the input holds in missing channels is never read.

    >>> import numpy as np
    >>> from MRImputationLib.core.contrasts import IXI
    >>> rng = np.random.default_rng(0)
    >>> t1 = rng.uniform(0, 1, (4, 8, 8)).astype(np.float32)
    >>> t2 = rng.uniform(0, 1, (4, 8, 8)).astype(np.float32)
    >>> stack = np.stack([t1, t2, 0.5 * t1 + 0.25 * t2 + 0.1])
    >>> imputer = LinearImputer(IXI).fit([(stack, np.ones(t1.shape, bool))])
    >>> given = stack.copy(); given[2] = 0
    >>> bool(np.allclose(imputer.predict(given, IXI.scenario_for(["T1", "T2"]))[2], stack[2], atol=1e-5))
    True
    """

    name = "linear"

    def __init__(self, contrasts: ContrastSet) -> None:
        self.contrasts = contrasts
        # scenario bits -> missing channel index -> (intercept, coefficients over available channels)
        self.coefficients: dict[str, dict[int, tuple[float, np.ndarray]]] = {}
        self.n_voxels = 0
        self.n_subjects = 0
        self.moments: np.ndarray | None = None  # the fitted statistics (to_state); None when made by from_dict
        self.moments_by_presence: dict[str, np.ndarray] = {}  # presence bits -> moments of those subjects

    def fit(
        self,
        subjects: Iterable[tuple[np.ndarray, np.ndarray]],
        scenarios: Sequence[Scenario] | None = None,
        max_voxels_per_subject: int = 200_000,
        seed: int = 0,
    ) -> "LinearImputer":
        """Fit every scenario (default: all of the contrast set's) from (stack, mask) pairs, or (stack, mask,
        present) triples for subjects that lack some contrasts (`present`: a bool per channel; the absent
        channels' values are never used).

        Each stack is (C, z, y, x) float in normalized units, each mask (z, y, x). At most
        `max_voxels_per_subject` mask voxels per subject are used, drawn without replacement from a
        generator seeded by (seed, subject position), so the fit is deterministic.
        """
        n = len(self.contrasts)
        by_presence: dict[str, np.ndarray] = {}
        n_voxels = n_subjects = 0
        for position, (stack, mask, *present) in enumerate(subjects):
            bits = "".join("1" if p else "0" for p in present[0]) if present and present[0] is not None else "1" * n
            stack = np.asarray(stack)
            mask = np.asarray(mask, bool)
            self._check_stack(stack, f"training subject {position}")
            if mask.shape != stack.shape[1:]:
                raise InputError(f"training subject {position}: mask {mask.shape} does not match the stack's grid {stack.shape[1:]}.")
            voxels = stack[:, mask].astype(np.float64)
            if voxels.shape[1] > max_voxels_per_subject:
                rng = np.random.default_rng([seed, position])
                keep = np.sort(rng.choice(voxels.shape[1], max_voxels_per_subject, replace=False))
                voxels = voxels[:, keep]
            voxels[[i for i, b in enumerate(bits) if b == "0"]] = 0.0
            design = np.vstack([np.ones((1, voxels.shape[1])), voxels])
            by_presence[bits] = by_presence.get(bits, np.zeros((n + 1, n + 1), np.float64)) + design @ design.T
            n_voxels += voxels.shape[1]
            n_subjects += 1
        if n_voxels <= n:
            raise InputError(
                f"the linear baseline needs more brain voxels than contrasts to fit; got {n_voxels} from "
                f"{n_subjects} subject(s). Check the training split and the brain masks."
            )
        self.n_voxels, self.n_subjects = n_voxels, n_subjects
        return self._solve(by_presence, scenarios or self.contrasts.scenarios())

    def _solve(self, by_presence: dict[str, np.ndarray], scenarios: Sequence[Scenario]) -> "LinearImputer":
        """Every scenario's least squares from the second-moment matrices of [1, c_1, ..., c_N], per missing
        contrast over the subjects that have the scenario's inputs and that contrast (a contrast no such
        subject has stays unfitted: `synthesizes` leaves it out)."""
        n = len(self.contrasts)
        self.coefficients = {}
        for scenario in scenarios:
            self._check_scenario(scenario)
            given = [i for i, available in enumerate(scenario.mask) if available]
            rows = [0] + [1 + i for i in given]
            solved = {}
            for m in (i for i, available in enumerate(scenario.mask) if not available):
                needed = set(given) | {m}
                moments = sum((v for bits, v in by_presence.items() if all(bits[i] == "1" for i in needed)),
                              np.zeros((n + 1, n + 1)))
                if moments[0, 0] <= len(rows):
                    continue
                # lstsq gives the minimum-norm solution when contrasts are collinear (e.g. a constant channel).
                beta = np.linalg.lstsq(moments[np.ix_(rows, rows)], moments[rows, 1 + m], rcond=None)[0]
                solved[m] = (float(beta[0]), beta[1:].copy())
            self.coefficients[scenario.bits] = solved
        self.moments_by_presence = dict(by_presence)
        self.moments = by_presence.get("1" * n, np.zeros((n + 1, n + 1)))
        return self

    def synthesizes(self, scenario: Scenario) -> list[int]:
        """The missing channels of `scenario` it was fitted for (evaluation/harness.py)."""
        return sorted(self.coefficients.get(scenario.bits, {}))

    def predict(self, stack: np.ndarray, scenario: Scenario) -> np.ndarray:
        """(C, z, y, x) in, (C, z, y, x) float32 out: available channels copied, missing ones predicted."""
        stack = np.asarray(stack)
        self._check_stack(stack, "input")
        solved = self.coefficients.get(scenario.bits)
        if solved is None:
            fitted = ", ".join(self.coefficients) or "none (call fit first)"
            raise InputError(f"the linear baseline was not fitted for scenario {scenario.bits}; fitted scenarios: {fitted}.")
        available = [i for i, a in enumerate(scenario.mask) if a]
        out = np.full(stack.shape, np.nan, np.float32)  # a missing contrast it was not fitted for stays NaN
        out[available] = stack[available]
        for m, (intercept, beta) in solved.items():
            channel = np.full(stack.shape[1:], intercept, np.float64)
            for weight, a in zip(beta, available):
                channel += weight * stack[a]
            out[m] = channel
        return out

    def to_dict(self) -> dict:
        """JSON-ready coefficients: per scenario, per missing contrast, intercept and weights by name."""
        names = self.contrasts.names
        scenarios = {}
        for bits, solved in self.coefficients.items():
            available = Scenario(bits).available(self.contrasts)
            scenarios[bits] = {
                names[m]: {"intercept": intercept, "weights": dict(zip(available, (float(b) for b in beta)))}
                for m, (intercept, beta) in solved.items()
            }
        return {
            "format": FORMAT,
            "contrasts": self.contrasts.to_dict(),
            "n_subjects": self.n_subjects,
            "n_voxels": self.n_voxels,
            "scenarios": scenarios,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "LinearImputer":
        """The imputer that `to_dict` described."""
        if data.get("format") != FORMAT:
            raise InputError(f"not a linear-baseline description (format {data.get('format')!r}, expected {FORMAT!r}).")
        imputer = cls(ContrastSet.from_dict(data["contrasts"]))
        imputer.n_subjects = int(data.get("n_subjects", 0))
        imputer.n_voxels = int(data.get("n_voxels", 0))
        for bits, per_missing in data["scenarios"].items():
            scenario = Scenario(bits)
            imputer._check_scenario(scenario)
            available = scenario.available(imputer.contrasts)
            imputer.coefficients[bits] = {
                imputer.contrasts.index(name): (
                    float(entry["intercept"]),
                    np.array([float(entry["weights"][a]) for a in available]),
                )
                for name, entry in per_missing.items()
            }
        return imputer

    def to_state(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """The fitted statistics as (arrays, text metadata), for a safetensors file (models/bundle.py):
        the second-moment matrix of [1, c_1, ..., c_N] (float64), the contrasts and the fitted scenarios.
        `from_state` solves the same coefficients from it, bit for bit.

        >>> from MRImputationLib.core.contrasts import IXI
        >>> rng = np.random.default_rng(1)
        >>> stack = rng.uniform(0, 1, (3, 4, 8, 8)); mask = np.ones((4, 8, 8), bool)
        >>> fitted = LinearImputer(IXI).fit([(stack, mask)])
        >>> again = LinearImputer.from_state(*fitted.to_state())
        >>> scenario = IXI.scenario_for(["T1"])
        >>> bool((again.predict(stack, scenario) == fitted.predict(stack, scenario)).all()), again.n_voxels
        (True, 256)
        """
        if self.moments is None:
            raise InputError("the linear baseline has no fitted statistics to save: fit it on training subjects first.")
        metadata = {"format": STATE_FORMAT, "contrasts": json.dumps(self.contrasts.to_dict()),
                    "scenarios": json.dumps(list(self.coefficients)), "n_subjects": str(self.n_subjects),
                    "n_voxels": str(self.n_voxels)}
        arrays = {"moments": np.ascontiguousarray(self.moments, np.float64)}
        arrays.update({f"moments_{bits}": np.ascontiguousarray(v, np.float64)
                       for bits, v in self.moments_by_presence.items() if "0" in bits})
        return arrays, metadata

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], metadata: dict[str, str],
                   source: str = "linear baseline") -> "LinearImputer":
        """The imputer that `to_state` saved; InputError naming `source` when it is not one."""
        if (metadata or {}).get("format") != STATE_FORMAT or "moments" not in arrays:
            raise InputError(f"{source}: not a saved linear baseline (format {(metadata or {}).get('format')!r}, "
                             f"expected {STATE_FORMAT!r}); export the bundle again.")
        try:
            imputer = cls(ContrastSet.from_dict(json.loads(metadata["contrasts"])))
            scenarios = [Scenario(bits) for bits in json.loads(metadata["scenarios"])]
            imputer.n_subjects, imputer.n_voxels = int(metadata["n_subjects"]), int(metadata["n_voxels"])
        except (KeyError, ValueError, TypeError) as error:
            raise InputError(f"{source}: its description is incomplete ({error}); export the bundle again.") from None
        size = len(imputer.contrasts) + 1
        by_presence = {"1" * (size - 1): arrays["moments"]}
        by_presence.update({key[len("moments_"):]: value for key, value in arrays.items() if key.startswith("moments_")})
        for bits, moments in by_presence.items():
            moments = np.asarray(moments, np.float64)
            if len(bits) != size - 1 or moments.shape != (size, size) or not np.isfinite(moments).all():
                raise InputError(f"{source}: its statistics are not a finite {size}x{size} matrix each; export the bundle "
                                 "again.")
            by_presence[bits] = moments
        return imputer._solve(by_presence, scenarios)

    def _check_stack(self, stack: np.ndarray, what: str) -> None:
        if stack.ndim != 4 or stack.shape[0] != len(self.contrasts):
            raise InputError(
                f"{what}: expected a (C, z, y, x) stack with C = {len(self.contrasts)} "
                f"({', '.join(self.contrasts.names)}), got shape {stack.shape}."
            )

    def _check_scenario(self, scenario: Scenario) -> None:
        if len(scenario.bits) != len(self.contrasts):
            raise InputError(
                f"scenario {scenario.bits} has {len(scenario.bits)} bits but the model has "
                f"{len(self.contrasts)} contrasts ({', '.join(self.contrasts.names)})."
            )
