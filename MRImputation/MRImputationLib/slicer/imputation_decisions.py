"""What the "Impute missing modalities" panel decides, without Slicer: selections, statements, commands.

Which node goes with which contrast (guessed from node names), whether a selection can work and
why not (a sentence the user can act on), the scenario it means ("given T1, T2 -> synthesizing
PD"), which built-in model suits the loaded volumes, the command line for the child process, and
the names of the output nodes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..core.contrasts import ContrastSet, Scenario, canonical_contrast, contrast_from_filename
from ..core.errors import InputError
from .job import library_command

DEVICES = ("auto", "cuda", "cpu")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
MAX_UNCERTAINTY_SAMPLES = 50


@dataclass
class ImputationOptions:
    """The one options type of an imputation job on the Slicer side: the panel's choices (saved in
    its parameter node), each mapped to one `mrimpute impute` option by `arguments()`.

    The command line is the boundary: the module never imports the pipeline, so these options
    travel as arguments. On the other side `mrimpute impute` reads them into the pipeline's
    ImputeOptions (pipelines/impute.py, the command's record in report.json), which sets up the
    generator runner's own InferenceOptions (imputation/slice_imputer.py: device, batch, precision,
    dropout on or off). The three are one chain through one contract, not three choices.

    >>> ImputationOptions(n4=False, uncertainty=4).arguments()
    ['--device', 'auto', '--precision', 'fp32', '--no-n4', '--uncertainty', '4']
    >>> ImputationOptions(device="gpu").check()
    (False, "device 'gpu': choose one of auto, cuda, cpu.")
    """

    n4: bool = True
    register: bool = True
    device: str = "auto"
    precision: str = "fp32"
    uncertainty: int = 0
    self_check: bool = False

    def check(self) -> tuple[bool, str]:
        """(True, "") when the options can work, else (False, a sentence saying what to change)."""
        if self.device not in DEVICES:
            return False, f"device {self.device!r}: choose one of {', '.join(DEVICES)}."
        if self.precision not in PRECISIONS:
            return False, f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}."
        if not 0 <= int(self.uncertainty) <= MAX_UNCERTAINTY_SAMPLES:
            return False, f"uncertainty samples {self.uncertainty}: give 0 (off) to {MAX_UNCERTAINTY_SAMPLES}."
        return True, ""

    def arguments(self) -> list[str]:
        """The `mrimpute impute` options; InputError with the reason when `check()` fails."""
        ok, reason = self.check()
        if not ok:
            raise InputError(reason)
        args = ["--device", self.device, "--precision", self.precision]
        if not self.n4:
            args.append("--no-n4")
        if not self.register:
            args.append("--no-register")
        if self.uncertainty:
            args += ["--uncertainty", str(int(self.uncertainty))]
        if self.self_check:
            args.append("--self-check")
        return args


@dataclass(frozen=True)
class SelectionState:
    """Whether a selection of input volumes can be imputed: `valid`, the `reason` if not, the `statement`."""

    valid: bool
    reason: str
    statement: str
    scenario: Scenario | None = None

    def as_tuple(self) -> tuple[bool, str]:
        """SlicerNNUnet's `isValid() -> (bool, reason)` form."""
        return self.valid, self.reason


def describe_scenario(scenario: Scenario, contrasts: ContrastSet) -> str:
    """'given T1, T2 → synthesizing PD'.

    >>> from MRImputationLib.core.contrasts import IXI
    >>> describe_scenario(Scenario("110"), IXI)
    'given T1, T2 → synthesizing PD'
    """
    return scenario.describe(contrasts).replace("->", "→")


def selection_state(contrasts: ContrastSet | None, selected: Mapping[str, object],
                    trained_scenarios: Sequence[str] | None = None) -> SelectionState:
    """Judge a selection: `selected` maps each contrast to a node (or None / "" for "not available").

    >>> from MRImputationLib.core.contrasts import IXI
    >>> selection_state(IXI, {"T1": "t1 node", "T2": "t2 node", "PD": None}).statement
    'given T1, T2 → synthesizing PD'
    >>> selection_state(IXI, {"T1": None, "T2": None, "PD": None}).reason
    'Select at least one input volume (T1, T2 or PD).'
    """
    if contrasts is None:
        return SelectionState(False, "Choose a model first (install one, import one from disk, or download one).", "")
    names = contrasts.names
    listing = ", ".join(names[:-1]) + " or " + names[-1]
    given = [n for n in names if selected.get(n)]
    if not given:
        return SelectionState(False, f"Select at least one input volume ({listing}).", "")
    if len(given) == len(names):
        return SelectionState(False, f"Every contrast of the model ({', '.join(names)}) is selected, so nothing is "
                                     "missing: choose '(not available)' for the one to synthesize.", "")
    chosen = [selected[n] for n in given]
    for i, node in enumerate(chosen):
        if any(node is other for other in chosen[i + 1:]):
            return SelectionState(False, "The same volume is selected for two contrasts; pick a different volume "
                                         "for each.", "")
    scenario = contrasts.scenario_for(given)
    statement = describe_scenario(scenario, contrasts)
    if trained_scenarios and scenario.bits not in trained_scenarios:
        usable = "; ".join(describe_scenario(Scenario(b), contrasts) for b in trained_scenarios)
        return SelectionState(False, f"This model was not trained for {statement}. It can do: {usable}.", statement,
                              scenario)
    return SelectionState(True, "", statement, scenario)


def guess_contrast(node_name: str, contrasts: Iterable[str]) -> str | None:
    """The model contrast a node's name names ("BraTS-GLI-00001-000-t2f" -> "FLAIR"), or None.

    >>> guess_contrast("IXI002-Guys-0828-T2", ["T1", "T2", "PD"]), guess_contrast("Segmentation", ["T1", "T2"])
    ('T2', None)
    """
    known = [canonical_contrast(c) for c in contrasts]
    try:
        contrast = contrast_from_filename(node_name, known=known)
    except InputError:
        return None
    return contrast if contrast in known else None


def prefill(contrasts: Sequence[str], node_names: Sequence[str], skip: Iterable[str] = ()) -> dict[str, str]:
    """For each contrast, the first node name that names it (names in `skip` are ignored, e.g. our outputs).

    >>> prefill(["T1", "T2", "PD"], ["sub-1_T1", "PD (synthetic)", "sub-1_T2"], skip=["PD (synthetic)"])
    {'T1': 'sub-1_T1', 'T2': 'sub-1_T2'}
    """
    skipped = set(skip)
    found: dict[str, str] = {}
    for name in node_names:
        if name in skipped:
            continue
        contrast = guess_contrast(name, contrasts)
        if contrast and contrast not in found:
            found[contrast] = name
    return {c: found[c] for c in (canonical_contrast(c) for c in contrasts) if c in found}


def preselected_model(cards: Sequence, node_names: Sequence[str], current: str | None = None,
                      skip: Iterable[str] = ()) -> str | None:
    """The id of the built-in model whose contrasts the loaded volumes match best (most of its contrasts
    named by a volume, then one that has something left to synthesize, then fewest of them absent), or
    None when no built-in model matches any volume.
    `current` (any model's id) is kept when it matches the volumes as well as the best built-in model;
    `skip` are names never counted (our outputs).
    `cards` are models/catalogue.py ModelCards (any object with `id`, `contrasts` and `builtin`).

    >>> from types import SimpleNamespace as Card
    >>> cards = [Card(id="ixi-1.0", contrasts=["T1", "T2", "PD"], builtin=True),
    ...          Card(id="brats-1.0", contrasts=["T1", "T1c", "FLAIR"], builtin=True),
    ...          Card(id="mine-0.1", contrasts=["T1", "T1c", "FLAIR", "T2"], builtin=False)]
    >>> preselected_model(cards, ["BraTS-GLI-00001-000-t1n", "BraTS-GLI-00001-000-t2f"])
    'brats-1.0'
    >>> preselected_model(cards, ["IXI002-Guys-0828-T1"], current="brats-1.0"), preselected_model(cards, ["Segmentation"])
    ('brats-1.0', None)
    >>> preselected_model(cards, ["sub-1_T1", "sub-1_FLAIR", "sub-1_T2"], current="mine-0.1")
    'mine-0.1'
    >>> four = cards[:2] + [Card(id="four-1.0", contrasts=["T1", "T1c", "T2", "FLAIR"], builtin=True)]
    >>> preselected_model(four, ["p_t1", "p_t1c", "p_flair"])  # all of brats-1.0 is there: T2 is what is missing
    'four-1.0'
    """
    def score(card) -> tuple[int, bool, int]:
        found = prefill(card.contrasts, node_names, skip)
        return len(found), len(found) < len(card.contrasts), len(found) - len(card.contrasts)

    ranked = [(score(c), c.id) for c in cards if getattr(c, "builtin", False) or c.id == current]
    ranked = [(s, i) for s, i in ranked if s[0] > 0]
    if not ranked:
        return None
    best = max(s for s, _ in ranked)
    winners = [i for s, i in ranked if s == best]
    return current if current in winners else winners[0]


def output_node_name(contrast: str, kind: str = "synthetic") -> str:
    """'PD (synthetic)', 'PD uncertainty', 'PD error'.

    >>> output_node_name("PD"), output_node_name("PD", "uncertainty")
    ('PD (synthetic)', 'PD uncertainty')
    """
    if kind == "synthetic":
        return f"{contrast} (synthetic)"
    if kind in ("uncertainty", "error"):
        return f"{contrast} {kind}"
    raise ValueError(f"output kind {kind!r}: synthetic, uncertainty or error")


def impute_command(python: str | os.PathLike, model: str | os.PathLike, inputs: Mapping[str, str | os.PathLike],
                   out: str | os.PathLike, options: ImputationOptions | None = None,
                   references: Mapping[str, str | os.PathLike] | None = None) -> list[str]:
    """`[python, -m, MRImputationLib, impute, --model, ..., --input NAME=PATH ..., --progress, json]`.

    >>> impute_command("python", "m", {"T1": "t1.nii.gz"}, "out")[:8]
    ['python', '-m', 'MRImputationLib', 'impute', '--model', 'm', '--input', 'T1=t1.nii.gz']
    """
    if not inputs:
        raise InputError("no input volume was given; select at least one.")
    arguments = ["--model", str(model)]
    for name, path in inputs.items():
        arguments += ["--input", f"{canonical_contrast(name)}={path}"]
    arguments += ["--out", str(out), *(options or ImputationOptions()).arguments()]
    for name, path in (references or {}).items():
        arguments += ["--reference", f"{canonical_contrast(name)}={path}"]
    return library_command(python, "impute", *arguments)


def compare_command(python: str | os.PathLike, synthetic: str | os.PathLike, real: str | os.PathLike,
                    out: str | os.PathLike, same_units: bool = False) -> list[str]:
    """`[python, -m, MRImputationLib, compare, SYNTH, REAL, --out, DIR, --progress, json]`."""
    return library_command(python, "compare", synthetic, real, "--out", out, *(["--same-units"] if same_units else []))


def read_report(out: str | os.PathLike) -> dict:
    """The report.json that `mrimpute impute` wrote into `out`."""
    path = Path(out) / "report.json"
    if not path.is_file():
        raise InputError(f"{out}: no report.json; the imputation did not finish.")
    return json.loads(path.read_text(encoding="utf-8"))


def provenance(report: Mapping, scenario_statement: str, kind: str) -> dict:
    """Node attributes recording what made an output: model, version, weights hash, scenario."""
    model = report.get("model") or {}
    hashes = report.get("model_sha256") or {}
    return {
        "kind": kind,
        "model": model.get("name"),
        "modelVersion": model.get("version"),
        "modelSha256": hashes.get("generator.safetensors") or ",".join(f"{k}:{v}" for k, v in hashes.items()),
        "scenario": report.get("scenario"),
        "scenarioText": scenario_statement,
        "given": ",".join(report.get("given") or []),
        "units": report.get("units"),
        "device": report.get("device"),
        "precision": report.get("precision"),
    }
