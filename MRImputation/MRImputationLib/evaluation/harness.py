"""The evaluation harness: any imputer, every scenario, every missing contrast, every subject.

The harness, not the imputer, zeroes the missing channels before `predict`, so no imputer can
see the truth it is asked to synthesize. Scores are computed in each true volume's original units
(through the subject's `denormalize`) with `metrics.project_metrics` and, in separate columns,
`metrics.legacy_metrics`. A subject with a tumour mask also gets PSNR and SSIM inside the tumour and
in the rest of the brain (BraSyn's split, EVALUATION.md): rows and summary lines then carry
REGION_METRICS, which subjects without a mask leave out.

>>> import numpy as np
>>> from MRImputationLib.core.contrasts import IXI
>>> class Zeros:
...     name = "zeros"
...     def predict(self, stack, scenario):
...         return stack
>>> stack = np.random.default_rng(0).uniform(0.1, 1, (3, 2, 16, 16))
>>> result = evaluate([Zeros()], [EvalSubject("s1", stack, np.ones((2, 16, 16), bool))], IXI)
>>> len(result.rows), result.rows[0]["scenario_label"], result.rows[0]["mae"] > 0.5
(9, 'T1,T2→PD', True)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np

from ..core.contrasts import ContrastSet, Scenario
from ..core.errors import InputError
from ..core.volume import Volume
from ..preprocessing.preprocessed import LoadedSubject
from .metrics import evaluation_units, legacy_metrics, paired_test, project_metrics

METRICS = ("psnr", "ssim", "mae", "legacy_psnr", "legacy_ssim")
REGION_METRICS = ("tumour_psnr", "tumour_ssim", "nontumour_psnr", "nontumour_ssim")
OVERALL = "overall"


class Imputer(Protocol):
    """Anything that fills missing contrasts: (C, z, y, x) normalized in, (C, z, y, x) normalized out.

    An imputer that serves only some scenarios or contrasts (a VAE-UNet's one target, a CycleGAN's
    two contrasts) also has `synthesizes(scenario) -> channels`: the missing channels it fills in
    that scenario (none: it is not run there). Cells it leaves out have no rows, so their n says so.
    """

    name: str

    def predict(self, stack: np.ndarray, scenario: Scenario) -> np.ndarray: ...


def synthesized_channels(imputer: Imputer, scenario: Scenario) -> list[int]:
    """The missing channels of `scenario` that `imputer` fills (all of them, unless it says otherwise)."""
    missing = [i for i, available in enumerate(scenario.mask) if not available]
    ask = getattr(imputer, "synthesizes", None)
    return missing if ask is None else [m for m in ask(scenario) if m in missing]


@dataclass
class EvalSubject:
    """One test subject: its contrasts in normalized units on the reference grid at native resolution.

    `denormalize(channel, array)` maps a normalized array of that channel back to the true volume's
    original units; None means the normalized units are the original ones.
    """

    name: str
    stack: np.ndarray
    mask: np.ndarray
    denormalize: Callable[[int, np.ndarray], np.ndarray] | None = None
    frame: Volume | None = None  # the reference grid, for imputers that cut slices (wants_frame)
    tumour: np.ndarray | None = None  # (z, y, x) bool tumour mask; None: no tumour scores
    present: tuple[bool, ...] | None = None  # per channel, whether the subject has it; None: every one

    def has(self, channel: int) -> bool:
        return self.present is None or bool(self.present[channel])

    def original(self, channel: int, array: np.ndarray) -> np.ndarray:
        return np.asarray(array if self.denormalize is None else self.denormalize(channel, array))


@dataclass
class ExampleSlice:
    """One axial slice for figures, every image divided by its own true volume's evaluation units."""

    subject: str
    scenario: str
    scenario_label: str
    contrast: str
    slice_index: int
    given: dict[str, np.ndarray]
    truth: np.ndarray
    synthesis: dict[str, np.ndarray] = field(default_factory=dict)
    mask: np.ndarray | None = None


def scenario_label(scenario: Scenario, contrasts: ContrastSet) -> str:
    """'T2,PD→T1': the given contrasts, an arrow, the missing ones (`Scenario.label`)."""
    return scenario.label(contrasts)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; inf if any value is inf)."""
    array = np.asarray(values, np.float64)
    if array.size == 0:
        return math.nan, math.nan
    if not np.all(np.isfinite(array)):
        return float(np.mean(array)), math.nan
    return float(np.mean(array)), float(np.std(array, ddof=1)) if array.size > 1 else 0.0


def _region_values(rows: Sequence[dict], metric: str) -> list[float]:
    """`metric` of the rows that have it (subjects with a tumour mask), NaN (an empty region) left out."""
    return [r[metric] for r in rows if metric in r and not math.isnan(r[metric])]


@dataclass
class EvaluationResult:
    """Per-subject scores (`rows`), example slices for figures, and the summaries of EVALUATION.md."""

    rows: list[dict]
    examples: list[ExampleSlice]
    methods: list[str]
    scenarios: list[dict]  # {"scenario": bits, "scenario_label": ..., "missing": [...]} in evaluation order

    def summary(self) -> list[dict]:
        """Mean ± std over subjects and n, per method × scenario × missing contrast, then per method
        an "overall" line (scenario "overall", contrast "all"): the mean over scenarios, each
        scenario first averaged over its missing contrasts. Its std is over subjects' overall scores."""
        out = []
        for method in self.methods:
            for info in self.scenarios:
                for contrast in info["missing"]:
                    cell = [r for r in self.rows if r["method"] == method and r["scenario"] == info["scenario"] and r["contrast"] == contrast]
                    out.append(self._summarize(method, info["scenario"], info["scenario_label"], contrast, cell))
            per_subject = self.overall_per_subject(method)
            out.append(self._summarize(method, OVERALL, "Overall", "all", list(per_subject.values())))
        return out

    def overall_per_subject(self, method: str) -> dict[str, dict]:
        """Each subject's overall scores for `method`: mean over scenarios of the mean over missing contrasts."""
        result = {}
        for subject in dict.fromkeys(r["subject"] for r in self.rows if r["method"] == method):
            per_scenario = []
            for info in self.scenarios:
                cell = [r for r in self.rows if r["method"] == method and r["subject"] == subject and r["scenario"] == info["scenario"]]
                if cell:
                    scores = {m: float(np.mean([r[m] for r in cell])) for m in METRICS}
                    scores.update({m: float(np.mean(v)) for m in REGION_METRICS if (v := _region_values(cell, m))})
                    per_scenario.append(scores)
            result[subject] = {"subject": subject, **{m: float(np.mean([s[m] for s in per_scenario])) for m in METRICS}}
            result[subject].update({m: float(np.mean(v)) for m in REGION_METRICS
                                    if (v := _region_values(per_scenario, m))})
        return result

    def comparisons(self, metric: str = "psnr") -> list[dict]:
        """Paired Wilcoxon tests between every two methods, per scenario × contrast and overall,
        on the subjects both were scored on; only where `metrics.paired_test` has enough subjects."""
        out = []
        for first, second in itertools.combinations(self.methods, 2):
            cells = [(i["scenario"], i["scenario_label"], c) for i in self.scenarios for c in i["missing"]]
            for bits, label, contrast in cells + [(OVERALL, "Overall", "all")]:
                if bits == OVERALL:
                    a, b = self.overall_per_subject(first), self.overall_per_subject(second)
                else:
                    a, b = ({r["subject"]: r for r in self.rows if r["method"] == m and r["scenario"] == bits and r["contrast"] == contrast}
                            for m in (first, second))
                subjects = [s for s in a if s in b]
                test = paired_test([a[s][metric] for s in subjects], [b[s][metric] for s in subjects])
                if test is not None:
                    out.append({"metric": metric, "method_a": first, "method_b": second, "scenario": bits,
                                "scenario_label": label, "contrast": contrast, **test})
        return out

    @staticmethod
    def _summarize(method: str, bits: str, label: str, contrast: str, cell: list[dict]) -> dict:
        entry = {"method": method, "scenario": bits, "scenario_label": label, "contrast": contrast, "n": len(cell)}
        for metric in METRICS:
            entry[f"{metric}_mean"], entry[f"{metric}_std"] = _mean_std([r[metric] for r in cell])
        if any(m in r for r in cell for m in REGION_METRICS):  # tumour scores: only where some subject has a mask
            entry["n_tumour"] = len(_region_values(cell, "tumour_psnr"))
            for metric in REGION_METRICS:
                entry[f"{metric}_mean"], entry[f"{metric}_std"] = _mean_std(_region_values(cell, metric))
        return entry


def _check_subject(subject: EvalSubject, contrasts: ContrastSet) -> None:
    stack, mask = np.asarray(subject.stack), np.asarray(subject.mask)
    if stack.ndim != 4 or stack.shape[0] != len(contrasts):
        raise InputError(
            f"subject {subject.name}: expected a (C, z, y, x) stack with C = {len(contrasts)} "
            f"({', '.join(contrasts.names)}), got shape {stack.shape}."
        )
    if mask.shape != stack.shape[1:]:
        raise InputError(f"subject {subject.name}: brain mask {mask.shape} does not match the stack's grid {stack.shape[1:]}.")
    if not mask.any():
        raise InputError(f"subject {subject.name}: the brain mask is empty, nothing to evaluate.")


def _middle_slice(mask: np.ndarray) -> int:
    """The axial slice halfway through the brain mask's extent along z."""
    z = np.flatnonzero(mask.any(axis=(1, 2)))
    return int((z[0] + z[-1]) // 2)


def _subject_arrays(subject: EvalSubject, contrasts: ContrastSet) -> tuple:
    """The subject, checked, as (stack, mask, each channel's truth in original units, their evaluation units)."""
    _check_subject(subject, contrasts)
    if subject.tumour is not None and np.shape(subject.tumour) != np.shape(subject.mask):
        raise InputError(f"subject {subject.name}: tumour mask {np.shape(subject.tumour)} does not match the brain "
                         f"mask's grid {np.shape(subject.mask)}.")
    stack = np.asarray(subject.stack, np.float32)
    mask = np.asarray(subject.mask, bool)
    truths = [subject.original(c, stack[c]) if subject.has(c) else np.zeros_like(stack[c])
              for c in range(len(contrasts))]
    units = [evaluation_units(t, mask) if subject.has(c) else 1.0 for c, t in enumerate(truths)]
    return stack, mask, truths, units


def _example_slices(subject: str, scenario: Scenario, info: dict, contrasts: ContrastSet, truths: list, units: list,
                    mask: np.ndarray, z: int) -> dict[int, ExampleSlice]:
    """Slice `z` of each missing channel's truth beside the given ones, each in its own evaluation units."""
    shown = {contrasts.names[a]: truths[a][z] / units[a] for a in range(len(contrasts)) if scenario.mask[a]}
    return {m: ExampleSlice(subject, scenario.bits, info["scenario_label"], contrasts.names[m], z, shown,
                            truths[m][z] / units[m], mask=mask[z].copy())
            for m, available in enumerate(scenario.mask) if not available}


def _predict(imputer: Imputer, given: np.ndarray, scenario: Scenario, subject: EvalSubject, mask: np.ndarray,
             shape: tuple) -> np.ndarray:
    """The imputer's output for a fresh copy of `given` (with the grid, for imputers that want it), all channels."""
    if getattr(imputer, "wants_frame", False):
        output = np.asarray(imputer.predict(given.copy(), scenario, frame=subject.frame, mask=mask))
    else:
        output = np.asarray(imputer.predict(given.copy(), scenario))
    if output.shape != shape:
        raise InputError(f"imputer {imputer.name} returned shape {output.shape} for input {shape}; it must return all channels.")
    return output


def _score_row(method: str, info: dict, contrast: str, subject: str, prediction: np.ndarray, truth: np.ndarray,
               mask: np.ndarray, tumour: np.ndarray | None = None) -> dict:
    """One row of scores: the project metrics inside the mask and the legacy ones, in original units;
    with a tumour mask, the project's PSNR and SSIM inside the tumour and in the rest of the brain too."""
    regions = None if tumour is None else {"tumour": tumour, "nontumour": ~tumour}
    project = project_metrics(prediction, truth, mask, regions)
    legacy = legacy_metrics(prediction, truth)
    return {
        "method": method, "scenario": info["scenario"], "scenario_label": info["scenario_label"],
        "contrast": contrast, "subject": subject,
        "psnr": project["psnr"], "ssim": project["ssim"], "mae": project["mae"],
        "legacy_psnr": legacy["psnr"], "legacy_ssim": legacy["ssim"],
        **{m: project[m] for m in REGION_METRICS if m in project},
    }


def evaluate(
    imputers: Sequence[Imputer],
    subjects: Sequence[EvalSubject],
    contrasts: ContrastSet,
    scenarios: Sequence[Scenario] | None = None,
    on_progress: Callable[[float, str], None] | None = None,
    keep_examples: int = 1,
) -> EvaluationResult:
    """Score every imputer on every subject, scenario and missing contrast.

    Missing channels are set to 0 before each `predict` (on a fresh copy per imputer). Predictions
    and truths are mapped to original units with the subject's `denormalize`, then scored with the
    project and legacy metrics. The first `keep_examples` subjects also give a middle axial slice
    per scenario × missing contrast for figures. `on_progress(fraction, message)` is called after
    each subject × scenario.
    """
    scenarios = list(scenarios or contrasts.scenarios())
    names = [imputer.name for imputer in imputers]
    if len(set(names)) != len(names):
        raise InputError(f"imputer names must differ to be told apart in the tables, got {', '.join(names)}.")
    infos = [{"scenario": s.bits, "scenario_label": scenario_label(s, contrasts), "missing": list(s.missing(contrasts))} for s in scenarios]
    rows: list[dict] = []
    examples: list[ExampleSlice] = []
    total = max(1, len(subjects) * len(scenarios))
    for subject_index, subject in enumerate(subjects):
        stack, mask, truths, units = _subject_arrays(subject, contrasts)
        tumour = None if subject.tumour is None else np.asarray(subject.tumour, bool)
        keep = subject_index < keep_examples
        z = _middle_slice(mask) if keep else 0
        for scenario_index, (scenario, info) in enumerate(zip(scenarios, infos)):
            if len(scenario.bits) != len(contrasts):
                raise InputError(f"scenario {scenario.bits} does not have one bit per contrast ({', '.join(contrasts.names)}).")
            missing = [i for i, available in enumerate(scenario.mask) if not available]
            # A subject is scored where it has the scenario's inputs, on the missing contrasts it has.
            inputs_there = all(subject.has(a) for a, available in enumerate(scenario.mask) if available)
            scored = [m for m in missing if subject.has(m)] if inputs_there else []
            given = stack.copy()
            given[missing] = 0.0
            scenario_examples = {}
            if keep and scored:
                scenario_examples = {m: e for m, e in _example_slices(subject.name, scenario, info, contrasts, truths,
                                                                        units, mask, z).items() if m in scored}
                examples.extend(scenario_examples.values())
            for imputer in imputers:
                channels = [m for m in synthesized_channels(imputer, scenario) if m in scored]
                if not channels:
                    continue
                output = _predict(imputer, given, scenario, subject, mask, stack.shape)
                for m in channels:
                    prediction = subject.original(m, output[m])
                    rows.append(_score_row(imputer.name, info, contrasts.names[m], subject.name, prediction, truths[m],
                                           mask, tumour))
                    if keep:
                        scenario_examples[m].synthesis[imputer.name] = prediction[z] / units[m]
            if on_progress is not None:
                done = subject_index * len(scenarios) + scenario_index + 1
                on_progress(done / total, f"{subject.name}: {info['scenario_label']}")
    return EvaluationResult(rows=rows, examples=examples, methods=names, scenarios=infos)


def eval_subjects(loaded: Sequence[LoadedSubject]) -> list[EvalSubject]:
    """Subjects loaded from a preprocessed folder, as the harness scores them."""
    return [EvalSubject(s.name, s.stack, s.mask, s.denormalize, frame=s.frame, tumour=s.tumour, present=s.present)
            for s in loaded]
