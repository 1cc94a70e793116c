"""The evaluation harness and its reports, on a small synthetic imputation problem."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from MRImputationLib.core.errors import InputError
from MRImputationLib.evaluation.harness import EvalSubject, EvaluationResult, evaluate
from MRImputationLib.models.linear import LinearImputer
from MRImputationLib.core.contrasts import IXI, Scenario
from MRImputationLib.evaluation.reports import write_report

SHAPE = (6, 32, 32)


def synthetic_subject(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """T1, T2, PD as smooth functions of a random 'tissue' field plus noise, zero outside a brain disc."""
    rng = np.random.default_rng(seed)
    tissue = gaussian_filter(rng.normal(size=SHAPE), 2.0)
    tissue = (tissue - tissue.min()) / (tissue.max() - tissue.min())
    _, y, x = np.indices(SHAPE)
    mask = (y - 16) ** 2 + (x - 16) ** 2 < 12**2
    t1 = 0.3 + 0.6 * tissue
    t2 = 1.0 - 0.7 * tissue + 0.1 * tissue**2
    pd = 0.5 + 0.4 * np.sqrt(tissue)
    stack = np.stack([t1, t2, pd]) + rng.normal(0, 0.02, (3, *SHAPE))
    return (stack * mask).astype(np.float32), mask


class MeanImputer:
    """Fills each missing contrast with its mean over the training brains."""

    name = "mean"

    def __init__(self, subjects):
        self.means = np.mean([stack[:, mask].mean(axis=1) for stack, mask in subjects], axis=0)

    def predict(self, stack, scenario):
        out = stack.copy()
        for channel, available in enumerate(scenario.mask):
            if not available:
                out[channel] = self.means[channel]
        return out


class Cheater:
    """Returns its input unchanged: it would score perfectly if the harness leaked the truth."""

    name = "cheater"

    def __init__(self):
        self.largest_missing_input = 0.0

    def predict(self, stack, scenario):
        missing = [i for i, available in enumerate(scenario.mask) if not available]
        self.largest_missing_input = max(self.largest_missing_input, float(np.abs(stack[missing]).max()))
        return stack


@pytest.fixture(scope="module")
def evaluated():
    training = [synthetic_subject(seed) for seed in (10, 11, 12)]
    tests = [EvalSubject(f"sub-{i}", *synthetic_subject(seed)) for i, seed in enumerate((20, 21, 22))]
    imputers = [LinearImputer(IXI).fit(training), MeanImputer(training)]
    fractions = []
    result = evaluate(imputers, tests, IXI, on_progress=lambda f, message: fractions.append(f))
    return result, fractions


def test_linear_regression_beats_the_mean_in_every_scenario(evaluated):
    result, _ = evaluated
    summary = result.summary()
    for entry in (e for e in summary if e["method"] == "linear"):
        mean = next(e for e in summary if e["method"] == "mean" and e["scenario"] == entry["scenario"]
                    and e["contrast"] == entry["contrast"])
        assert entry["psnr_mean"] > mean["psnr_mean"] and entry["mae_mean"] < mean["mae_mean"], entry["scenario_label"]
        assert entry["ssim_mean"] > mean["ssim_mean"], entry["scenario_label"]


def test_rows_cover_method_scenario_missing_contrast_and_subject(evaluated):
    result, fractions = evaluated
    assert len(result.rows) == 2 * 9 * 3  # methods × (3 one-missing + 3 two-missing contrasts) × subjects
    assert {r["scenario_label"] for r in result.rows} == {"T1,T2→PD", "T1,PD→T2", "T2,PD→T1", "T1→T2,PD", "T2→T1,PD", "PD→T1,T2"}
    assert fractions[-1] == pytest.approx(1.0) and fractions == sorted(fractions)


def test_summary_counts_subjects_and_adds_one_overall_line_per_method(evaluated):
    result, _ = evaluated
    summary = result.summary()
    assert {e["n"] for e in summary} == {3}
    overall = [e for e in summary if e["scenario"] == "overall"]
    assert [e["method"] for e in overall] == ["linear", "mean"]
    linear_cells = [e for e in summary if e["method"] == "linear" and e["scenario"] != "overall"]
    per_scenario = {}
    for e in linear_cells:
        per_scenario.setdefault(e["scenario"], []).append(e["psnr_mean"])
    assert overall[0]["psnr_mean"] == pytest.approx(np.mean([np.mean(v) for v in per_scenario.values()]))


def test_examples_hold_a_middle_slice_with_every_method_for_the_first_subject(evaluated):
    result, _ = evaluated
    assert len(result.examples) == 9 and {e.subject for e in result.examples} == {"sub-0"}
    example = result.examples[0]
    assert set(example.synthesis) == {"linear", "mean"} and example.truth.shape == SHAPE[1:]
    assert example.slice_index == (SHAPE[0] - 1) // 2 and list(example.given) == ["T1", "T2"]


def test_the_harness_zeroes_missing_inputs_so_no_imputer_can_see_the_truth():
    cheater = Cheater()
    subject = EvalSubject("s", *synthetic_subject(1))
    result = evaluate([cheater], [subject], IXI, scenarios=[Scenario("011")])
    assert cheater.largest_missing_input == 0.0
    assert result.rows[0]["mae"] > 0.5 and math.isfinite(result.rows[0]["psnr"])
    assert subject.stack[0].max() > 0  # the subject's own data is left untouched


def test_scores_are_taken_in_original_units_through_denormalize():
    stack, mask = synthetic_subject(2)
    calls = []

    def to_scanner_units(channel, array):
        calls.append(channel)
        return array * (1000.0 + 500 * channel) + 0.5 * mask  # an offset inside the brain changes the scores

    imputer = MeanImputer([synthetic_subject(3)])
    plain = evaluate([imputer], [EvalSubject("s", stack, mask)], IXI, keep_examples=0)
    scanner = evaluate([imputer], [EvalSubject("s", stack, mask, to_scanner_units)], IXI, keep_examples=0)
    assert set(calls) == {0, 1, 2}
    assert [r["contrast"] for r in plain.rows] == [r["contrast"] for r in scanner.rows]
    assert any(p["mae"] != pytest.approx(s["mae"]) for p, s in zip(plain.rows, scanner.rows))


def test_inconsistent_subjects_and_duplicate_method_names_are_refused():
    stack, mask = synthetic_subject(0)
    with pytest.raises(InputError, match="mask"):
        evaluate([MeanImputer([(stack, mask)])], [EvalSubject("s", stack, mask[:-1])], IXI)
    with pytest.raises(InputError, match="names must differ"):
        evaluate([Cheater(), Cheater()], [EvalSubject("s", stack, mask)], IXI)


def test_paired_comparisons_appear_with_five_subjects():
    rows = [{"method": m, "scenario": "011", "scenario_label": "T2,PD→T1", "contrast": "T1", "subject": f"s{i}",
             "psnr": 30.0 + i + (2.0 if m == "a" else 0.0), "ssim": 0.9, "mae": 0.05, "legacy_psnr": 30.0, "legacy_ssim": 0.9}
            for m in ("a", "b") for i in range(5)]
    result = EvaluationResult(rows, [], ["a", "b"], [{"scenario": "011", "scenario_label": "T2,PD→T1", "missing": ["T1"]}])
    comparisons = result.comparisons("psnr")
    assert [c["scenario"] for c in comparisons] == ["011", "overall"]
    assert comparisons[0]["median_difference"] == pytest.approx(2.0) and comparisons[0]["n"] == 5


def test_report_writes_tables_and_figures_naming_every_scenario(evaluated, tmp_path):
    result, _ = evaluated
    # One scenario's example figure is enough here; drawing all of them only costs test time.
    result = dataclasses.replace(result, examples=[e for e in result.examples if e.scenario in ("011", "100")])
    paths = write_report(result, tmp_path / "report", "Synthetic check")
    assert set(paths) == {"json", "csv", "markdown", "bars", "examples_011", "examples_100"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    markdown = paths["markdown"].read_text(encoding="utf-8")
    for label in {r["scenario_label"] for r in result.rows}:
        assert label in markdown
    assert "| **Overall** |" in markdown and "Legacy MM-GAN metric" in markdown
    document = json.loads(paths["json"].read_text(encoding="utf-8"), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert len(document["rows"]) == len(result.rows) and len(document["summary"]) == len(result.summary())
    with paths["csv"].open(encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == len(result.rows)
    assert not [p for p in (tmp_path / "report").iterdir() if ".tmp-" in p.name]


class BrainSlicesOnly:
    """Fills missing contrasts with a constant on slices with brain and leaves the others at 0, as a
    slice-wise network does with slices it never sees."""

    name = "brain-slices"

    def __init__(self, mask):
        self.brain_slices = mask.any(axis=(1, 2))

    def predict(self, stack, scenario):
        out = stack.copy()
        for channel, available in enumerate(scenario.mask):
            if not available:
                out[channel] = np.where(self.brain_slices[:, None, None], 0.6, 0.0)
        return out


def test_legacy_psnr_stays_finite_when_background_slices_come_back_exactly():
    """Reproduces an inf in a legacy cell: normalized 0 outside the head is the grey background (an
    offset of 30 in original units) in truth and prediction alike on a slice without brain."""
    stack, mask = synthetic_subject(4)
    stack[:, 0], mask[0] = 0.0, False

    def with_grey_background(channel, array):
        return array * 800.0 + 30.0

    subject = EvalSubject("s", stack, mask, with_grey_background)
    result = evaluate([BrainSlicesOnly(mask)], [subject], IXI, keep_examples=0)
    assert all(math.isfinite(r["legacy_psnr"]) and math.isfinite(r["psnr"]) for r in result.rows)
    assert all(math.isfinite(e["legacy_psnr_mean"]) for e in result.summary())


def test_a_phantom_subject_with_a_tumour_mask_gets_tumour_and_rest_of_brain_scores_one_without_none(tmp_path):
    from MRImputationLib.data.phantom import PhantomConfig, make_subject, write_subject
    from MRImputationLib.evaluation.harness import REGION_METRICS, eval_subjects
    from MRImputationLib.preprocessing.folder import preprocess_folder
    from MRImputationLib.preprocessing.preprocessed import load_subjects
    from MRImputationLib.preprocessing.subject import PreprocessConfig

    config = PhantomConfig(shape=(40, 40, 24), misalignment="none", bias_strength=0.05)
    write_subject(make_subject(config, 31, "sub-lesion"), tmp_path / "raw" / "sub-lesion")
    write_subject(make_subject(dataclasses.replace(config, lesion=False), 32, "sub-plain"), tmp_path / "raw" / "sub-plain")
    preprocess_folder(tmp_path / "raw", tmp_path / "pre", PreprocessConfig(n4=False, register=False, qc=False))
    lesion, plain = eval_subjects(load_subjects(tmp_path / "pre", ["sub-lesion", "sub-plain"], IXI))
    assert lesion.tumour is not None and lesion.tumour.any() and plain.tumour is None
    imputer = MeanImputer([(s.stack, s.mask) for s in (lesion, plain)])
    result = evaluate([imputer], [lesion, plain], IXI, scenarios=[Scenario("011"), Scenario("100")], keep_examples=0)
    for row in result.rows:
        if row["subject"] == "sub-lesion":
            assert all(math.isfinite(row[m]) for m in REGION_METRICS)
            assert row["tumour_psnr"] != row["nontumour_psnr"] and row["tumour_ssim"] != row["nontumour_ssim"]
        else:
            assert not set(REGION_METRICS) & set(row)
    summary = result.summary()
    assert {e["n_tumour"] for e in summary} == {1} and {e["n"] for e in summary} == {2}
    paths = write_report(result, tmp_path / "report", "Tumour check")
    with paths["csv"].open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert set(REGION_METRICS) <= set(rows[0])
    assert {r["subject"] for r in rows if r["tumour_psnr"]} == {"sub-lesion"}
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert "## Tumour and the rest of the brain" in markdown and "tumour PSNR / tumour SSIM" in markdown
    document = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert "tumour_ssim_mean" in document["summary"][0] and "nontumour_psnr_std" in document["summary"][0]


def test_reports_without_tumour_masks_keep_their_columns(evaluated, tmp_path):
    from MRImputationLib.evaluation.harness import REGION_METRICS

    result, _ = evaluated
    paths = write_report(dataclasses.replace(result, examples=[]), tmp_path / "report", "No masks")
    with paths["csv"].open(encoding="utf-8") as f:
        assert not set(REGION_METRICS) & set(next(csv.DictReader(f)))
    assert "Tumour" not in paths["markdown"].read_text(encoding="utf-8")
    assert all("n_tumour" not in e for e in result.summary())


def test_an_imputer_is_scored_only_in_the_cells_it_serves_and_a_smaller_model_among_more():
    """A one-target model (a VAE-UNet) has no row outside its cell; a two-contrast model (a CycleGAN)
    scored among three contrasts fills only its own contrasts, in the scenarios its given ones make."""
    from MRImputationLib.core.contrasts import ContrastSet, Scenario
    from MRImputationLib.evaluation.harness import EvalSubject, evaluate
    from MRImputationLib.evaluation.subset import ContrastSubsetImputer

    three = ContrastSet(("T1", "T1c", "FLAIR"), "T1")

    class OneTarget:
        name = "one-target"

        def synthesizes(self, scenario):
            return [2] if scenario.bits == "110" else []

        def predict(self, stack, scenario):
            assert scenario.bits == "110", "run outside the cells it serves"
            return stack + 0.1

    class Mean:
        name = "two-contrast"

        def predict(self, stack, scenario):
            out = stack.copy()
            out[~np.asarray(scenario.mask)] = stack[np.asarray(scenario.mask)].mean(axis=0)
            return out

    stack = np.random.default_rng(0).uniform(0.2, 1, (3, 4, 16, 16)).astype(np.float32)
    pair = ContrastSubsetImputer(Mean(), ContrastSet(("T1", "FLAIR"), "T1"), three)
    result = evaluate([OneTarget(), pair], [EvalSubject("s", stack, np.ones((4, 16, 16), bool))], three,
                      keep_examples=0)
    cells = {(r["method"], r["scenario"], r["contrast"]) for r in result.rows}
    assert {c for c in cells if c[0] == "one-target"} == {("one-target", "110", "FLAIR")}
    assert {c for c in cells if c[0] == "two-contrast"} == {("two-contrast", "100", "FLAIR"),
                                                            ("two-contrast", "001", "T1")}
    summary = {(r["method"], r["scenario"], r["contrast"]): r["n"] for r in result.summary()}
    assert summary[("one-target", "101", "T1c")] == 0 and summary[("two-contrast", "100", "FLAIR")] == 1
    assert pair.synthesizes(Scenario("010")) == [] and pair.synthesizes(Scenario("101")) == []
