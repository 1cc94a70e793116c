"""`mrimpute evaluate MODEL DATA --out DIR`: the model and its baselines, scored on the same subjects.

Subjects: `--subjects`, else the test part of `--split`, else the test part of the split the model
was trained with (when those subjects are in DATA), else every subject. The linear baseline is
fitted on that split's training subjects present in DATA (never on the evaluated ones).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..core.errors import InputError
from ..core.progress import Progress
from ..training.run_folder import RunFolder


def _split_of_model(model) -> dict | None:
    split = model.info.get("training", {}).get("split") if isinstance(model.info, dict) else None
    if split is None and RunFolder(model.source).split.exists():
        split = json.loads(RunFolder(model.source).split.read_text())
    return split


def choose_subjects(available: list[str], subjects: Sequence[str] | None, split: dict | None) -> tuple[list[str], list[str]]:
    """(evaluated, baseline-training) subject names."""
    train = [s for s in (split or {}).get("train", []) if s in available]
    if subjects:
        chosen = list(subjects)
    elif split and [s for s in split.get("test", []) if s in available]:
        chosen = [s for s in split["test"] if s in available]
    else:
        chosen = list(available)
    unknown = [s for s in chosen if s not in available]
    if unknown:
        raise InputError(f"subject(s) {', '.join(unknown)} not found; the data holds {', '.join(available)}.")
    return chosen, [s for s in train if s not in chosen]


def evaluate_model(model_path: Path, data: Path, out: Path, *, subjects: Sequence[str] | None = None,
                   split_file: Path | None = None, device: str = "cpu", baseline: bool = True,
                   progress: Progress | None = None) -> dict:
    from ..evaluation.harness import eval_subjects, evaluate
    from ..evaluation.reports import write_report
    from ..imputation.slice_imputer import InferenceOptions, SliceImputer
    from ..models.linear import LinearImputer
    from ..preprocessing.manifest import read_manifest
    from ..preprocessing.preprocessed import complete_subjects, load_subjects
    from ..training.run_folder import load_run_or_bundle
    from .train import resolve_preprocessed

    progress = progress or Progress("none")
    out = Path(out)
    model = load_run_or_bundle(model_path)
    preprocessed = resolve_preprocessed(Path(data), out, progress)
    manifest = read_manifest(preprocessed)
    available = complete_subjects(manifest, model.contrasts)
    if not available:
        raise InputError(f"{data}: no subject has all of the model's contrasts ({', '.join(model.contrasts.names)}).")
    split = json.loads(Path(split_file).read_text()) if split_file else _split_of_model(model)
    chosen, train = choose_subjects(available, subjects, split)
    imputers = [SliceImputer(model.generator, model.model_config, model.slicing, InferenceOptions(device=device),
                           name=model.model_config.name)]
    if baseline and train:
        progress.log(f"fitting the linear baseline on {len(train)} training subject(s)")
        linear = LinearImputer(model.contrasts).fit((s.stack, s.mask) for s in load_subjects(preprocessed, train, model.contrasts))
        imputers.insert(0, linear)
    elif baseline:
        progress.log("no training subjects of the model's split are in DATA: the linear baseline is left out")
    progress.log(f"evaluating on {len(chosen)} subject(s): {', '.join(chosen)}")
    loaded = eval_subjects(load_subjects(preprocessed, chosen, model.contrasts))
    scenarios = _trained_scenarios(model)
    result = evaluate(imputers, loaded, model.contrasts, scenarios, on_progress=progress.callback("evaluate"))
    files = write_report(result, out, title=f"{model.model_config.name} on {Path(data).name}")
    progress.log(f"results: {files['markdown']}")
    return {"out": str(out), "subjects": chosen, "files": {k: str(v) for k, v in files.items()},
            "summary": [r for r in result.summary() if r["scenario"] == "overall"]}


def _trained_scenarios(model):
    from ..core.contrasts import Scenario

    bits = model.info.get("scenarios") if isinstance(model.info, dict) else None
    return [Scenario(b) for b in bits] if bits else None
