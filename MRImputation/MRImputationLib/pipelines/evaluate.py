"""`mrimpute evaluate MODEL DATA --out DIR`: the model and its baselines, scored on the same subjects.

Subjects: `--subjects`, else the test part of `--split`, else the test part of the split the model
was trained with (when those subjects are in DATA), else every subject.

The linear baseline is fitted on the model's training data (EVALUATION.md), wherever DATA comes
from: a bundle that carries it (`baseline.safetensors`, written by `mrimpute export`) brings it
along. Only for a bundle without one (or a training run folder) is it fitted here, on the split's
training subjects present in DATA (never on the evaluated ones). results.json ("baseline") and
results.md say which.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..core.atomic import write_text
from ..core.contrasts import ContrastSet
from ..core.errors import InputError
from ..core.outputs import check_output_folder
from ..core.options import read_json_file
from ..core.progress import Progress
from ..training.run_folder import RunFolder

RECORDED = "the model's training data (recorded in the bundle)"


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


def fit_baseline(preprocessed: Path, names: Sequence[str], contrasts: ContrastSet):
    """The linear baseline fitted on the preprocessed subjects `names`, read one at a time (export uses it too)."""
    from ..models.linear import LinearImputer
    from ..preprocessing.manifest import read_manifest
    from ..preprocessing.preprocessed import load_subject, ok_records

    records = {r["subject"]: r for r in ok_records(read_manifest(preprocessed))}
    missing = [n for n in names if n not in records]
    if missing:
        raise InputError(f"{preprocessed}: subject(s) {', '.join(missing)} are not preprocessed there.")
    loaded = (load_subject(preprocessed, records[n], contrasts) for n in names)
    return LinearImputer(contrasts).fit((s.stack, s.mask, s.present) for s in loaded)


def evaluate_model(model_path: str | Path, data: Path, out: Path, *, subjects: Sequence[str] | None = None,
                   split_file: Path | None = None, device: str = "cpu", baseline: bool = True,
                   progress: Progress | None = None) -> dict:
    from ..evaluation.harness import eval_subjects, evaluate
    from ..evaluation.reports import write_report
    from ..imputation.slice_imputer import InferenceOptions, SliceImputer
    from ..preprocessing.manifest import read_manifest
    from ..preprocessing.preprocessed import load_subjects, usable_subjects
    from ..training.run_folder import load_run_or_bundle
    from .models import resolve_model
    from .train import resolve_preprocessed

    progress = progress or Progress("none")
    out = check_output_folder(out, "--out")  # before anything is read
    model = load_run_or_bundle(resolve_model(model_path, "MODEL", progress.log))
    preprocessed = resolve_preprocessed(Path(data), out, progress)
    manifest = read_manifest(preprocessed)
    available = usable_subjects(manifest, model.contrasts, least=2, refuse_short=False)
    if not available:
        raise InputError(f"{data}: no subject has two or more of the model's contrasts "
                         f"({', '.join(model.contrasts.names)}).")
    split = read_json_file(split_file, "split") if split_file else _split_of_model(model)
    chosen, train = choose_subjects(available, subjects, split)
    imputers = [SliceImputer(model.generator, model.model_config, model.slicing, InferenceOptions(device=device, flip_average=model.flip_average),
                           name=model.model_config.name)]
    linear, record = (_baseline(model, preprocessed, train, progress) if baseline else
                      (None, {"fitted_on": None, "note": "Linear baseline: left out (--no-baseline)."}))
    if linear is not None:
        imputers.insert(0, linear)
    progress.log(f"evaluating on {len(chosen)} subject(s): {', '.join(chosen)}")
    loaded = eval_subjects(load_subjects(preprocessed, chosen, model.contrasts))
    scenarios = model.scenarios
    result = evaluate(imputers, loaded, model.contrasts, scenarios, on_progress=progress.callback("evaluate"))
    files = write_report(result, out, title=f"{model.model_config.name} on {Path(data).name}")
    _record_baseline(files, record)
    progress.log(f"results: {files['markdown']}")
    return {"out": str(out), "subjects": chosen, "files": {k: str(v) for k, v in files.items()},
            "summary": [r for r in result.summary() if r["scenario"] == "overall"], "baseline": record}


def _baseline(model, preprocessed: Path, train: list[str], progress: Progress) -> tuple:
    """(the linear baseline or None, what results say of it): the bundle's recorded one, else fitted on `train`."""
    from ..models.bundle import read_baseline

    recorded = None if RunFolder(model.source).holds_run() else read_baseline(model.source)
    if recorded is not None:
        if list(recorded.contrasts.names) != list(model.contrasts.names):
            raise InputError(f"{model.source}: its linear baseline was fitted on {', '.join(recorded.contrasts.names)}, "
                             f"not on the model's {', '.join(model.contrasts.names)}; export the bundle again.")
        progress.log(f"linear baseline: the one recorded in the bundle, fitted on the model's training data "
                     f"({recorded.n_subjects} subject(s))")
        return recorded, {"fitted_on": RECORDED, "n_subjects": recorded.n_subjects, "subjects": None,
                          "note": f"Linear baseline: fitted on {RECORDED}, {recorded.n_subjects} subject(s)."}
    if not train:
        note = ("Linear baseline: left out (the model records none, and no training subject of its split is in "
                "DATA).")
        progress.log(note)
        return None, {"fitted_on": None, "note": note}
    progress.log(f"fitting the linear baseline on {len(train)} training subject(s) in DATA (the model records none)")
    linear = fit_baseline(preprocessed, train, model.contrasts)
    fitted_on = "the split's training subjects present in DATA (the model records no baseline)"
    return linear, {"fitted_on": fitted_on, "n_subjects": len(train), "subjects": list(train),
                    "note": f"Linear baseline: fitted on {fitted_on}: {', '.join(train)}."}


def _record_baseline(files: dict, record: dict) -> None:
    """Say in results.json ("baseline") and results.md which data the linear baseline was fitted on."""
    document = json.loads(Path(files["json"]).read_text(encoding="utf-8"))
    document["baseline"] = record
    write_text(files["json"], json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    markdown = Path(files["markdown"])
    write_text(markdown, markdown.read_text(encoding="utf-8").rstrip("\n") + f"\n\n{record['note']}\n")
