"""`mrimpute demo`: the whole product on the built-in phantom (or `--data DIR`), no download.

1. phantom subjects with known misalignment, bias field and noise (skipped with --data);
2. preprocessing (N4, registration, brain mask, normalization, QC pictures), with the registration
   error measured against the phantom's known transforms;
3. a `tiny` MM-GAN trained for a minute or two on CPU, exported as a bundle (reused when present);
4. one contrast of a held-out subject hidden, imputed from the others, and compared with the real
   one: the synthetic volume, an error-map picture and a metric table, beside the linear baseline;
5. when the extension ships built-in models (Resources/Models), each of them the same way on a
   subject with its contrasts (a phantom one made for it when needed): pipelines/demo_builtin.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..core.atomic import write_text
from ..core.progress import Progress

DEMO_SHAPE = (96, 96, 64)
DEMO_SUBJECTS = 7
DEMO_TRAINING = {"epochs": 12, "model_overrides": {"image_size": 64}}


def registration_errors(manifest: dict, phantom_folder: Path) -> list[dict]:
    """Mean displacement (mm, over the brain) between the estimated and the phantom's true transforms."""
    from ..core.io import read_volume
    from ..preprocessing.registration import mean_displacement_mm

    rows = []
    for record in manifest["subjects"]:
        truth_file = phantom_folder / record["subject"] / "truth" / "transforms.json"
        if record.get("status") != "ok" or not truth_file.exists():
            continue
        truth = json.loads(truth_file.read_text())
        mask = read_volume(phantom_folder / record["subject"] / "truth" / f"{record['subject']}_brainmask.nii.gz")
        points = mask.index_to_physical(np.argwhere(mask.array > 0)[:, ::-1])
        for name, step in record["steps"]["registration"].items():
            true = np.asarray(truth["transforms"][name])
            before = mean_displacement_mm(np.eye(4), true, points)
            after = mean_displacement_mm(np.asarray(step["fixed_to_moving"]), true, points)
            rows.append({"subject": record["subject"], "contrast": name, "misalignment_mm": round(before, 2),
                         "residual_mm": round(after, 3), "seconds": step["seconds"]})
    return rows


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def run_demo(out: Path, progress: Progress, data: Path | None = None, hide: str | None = None,
             builtin: Path | None = None) -> dict:
    """The demo's steps into OUT; returns the held-out subject's metrics and the files to look at.
    `builtin`: the folder of built-in models (default the extension's Resources/Models)."""
    from ..core.outputs import check_output_folder
    from .demo_builtin import builtin_demo

    out, asked, on_phantom = check_output_folder(out, "--out"), hide, data is None
    data, subjects = _demo_subjects(out, data, progress)
    held_out = subjects[-1]
    names = sorted(set.intersection(*(set(s.files) for s in subjects)))
    hide = hide or ("PD" if "PD" in names else "FLAIR" if "FLAIR" in names else names[-1])

    preprocessed = out / "preprocessed"
    sections = _demo_preprocess(data, preprocessed, progress)
    bundle = _demo_model(out, preprocessed, subjects, progress)
    report, given, imputed = _demo_impute(bundle, held_out, names, hide, out / "imputed" / held_out.subject, progress)
    metrics = report["comparison"][hide]
    sections += _impute_sections(report, hide, held_out.subject, given)
    builtin_sections, builtin_results = builtin_demo(out, subjects, on_phantom, progress, asked, builtin)
    sections += builtin_sections
    summary = "# MRImputation demo\n\n" + "\n\n".join(sections) + "\n"
    write_text(out / "demo_summary.md", summary)
    files = [imputed / f for f in (f"{hide}_synthetic.nii.gz", f"{hide}_uncertainty.nii.gz", f"{hide}_error.png")]
    files += [Path(r["out"]) / f"{r['hidden']}_{kind}" for r in builtin_results for kind in ("synthetic.nii.gz", "error.png")]
    progress.log("\n" + summary)
    progress.log("Look at:\n  " + "\n  ".join(str(f) for f in files + [out / "preprocessed" / held_out.subject / "qc"]))
    progress.log(f"Everything is in {out.resolve()}")
    return {"out": str(out), "hidden": hide, "subject": held_out.subject, "metrics": metrics,
            "files": [str(f) for f in files], "builtin": builtin_results}


def _demo_subjects(out: Path, data: Path | None, progress: Progress) -> tuple[Path, list]:
    """Step 1: the phantom subjects written into OUT/phantom (or those in `data`); at least 3 of them."""
    from ..data.discovery import discover_subjects

    if data is None:
        from ..data.phantom import PhantomConfig, write_phantom

        data = out / "phantom"
        progress.log(f"[1/4] {DEMO_SUBJECTS} phantom subjects ({'x'.join(map(str, DEMO_SHAPE))} voxels, random rigid "
                     f"misalignment, bias field, Rician noise) -> {data}")
        if not data.exists():
            write_phantom(data, DEMO_SUBJECTS, PhantomConfig(shape=DEMO_SHAPE, misalignment="rigid"), seed=2026,
                          on_progress=progress.callback("phantom"))
    else:
        progress.log(f"[1/4] using the subjects in {data}")
    subjects = discover_subjects(data)
    if len(subjects) < 3:
        from ..core.errors import InputError

        raise InputError(f"{data}: the demo needs at least 3 subjects (found {len(subjects)}): some to train on, one to test.")
    return data, subjects


def _demo_preprocess(data: Path, preprocessed: Path, progress: Progress) -> list[str]:
    """Step 2: preprocessing; returns the summary's registration section (none without a phantom's truth)."""
    from ..preprocessing.folder import preprocess_folder
    from ..preprocessing.subject import PreprocessConfig

    progress.log(f"[2/4] preprocessing (N4, registration, brain mask, normalization, QC) -> {preprocessed}")
    manifest = preprocess_folder(data, preprocessed, PreprocessConfig(), jobs=1, progress=progress)
    rows = registration_errors(manifest, data)
    if not rows:
        return []
    table = _table(["subject", "contrast", "misalignment before (mm)", "residual after (mm)", "seconds"],
                   [[r["subject"], r["contrast"], r["misalignment_mm"], r["residual_mm"], r["seconds"]] for r in rows])
    progress.log("\nregistration residual (mean over the brain):\n" + table)
    return ["## Registration against the phantom's known misalignment\n\n" + table]


def _demo_model(out: Path, preprocessed: Path, subjects: list, progress: Progress) -> Path:
    """Step 3: a tiny model trained on all but the last subject and exported to OUT/model (reused when there)."""
    from ..data.splits import Split
    from .export import export_run
    from .train import train_run

    run, bundle = out / "run", out / "model"
    if (bundle / "bundle.json").exists():
        progress.log(f"[3/4] reusing the model built before in {bundle}")
        return bundle
    progress.log(f"[3/4] training a tiny MM-GAN on CPU (a minute or two) -> {bundle}")
    train_subjects = [s.subject for s in subjects[:-1]]
    split = Split(train=train_subjects[:-1], val=train_subjects[-1:], test=[subjects[-1].subject], seed=0)
    if run.exists():  # left by an interrupted demo: the demo owns this folder, start it again
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    split.save(run / "requested_split.json")
    train_run(preprocessed, run, "tiny", DEMO_TRAINING, split_file=run / "requested_split.json", progress=progress)
    export_run(run, bundle, name="demo-tiny")
    return bundle


def _demo_impute(bundle: Path, held_out, names: list[str], hide: str, imputed: Path,
                 progress: Progress) -> tuple[dict, dict, Path]:
    """Step 4: `hide` of the held-out subject imputed from its other contrasts; (report, given, output folder)."""
    from .impute import ImputeOptions, impute

    progress.log(f"[4/4] hiding {hide} of {held_out.subject}, imputing it from "
                 f"{', '.join(n for n in names if n != hide)}")
    given = {n: p for n, p in held_out.files.items() if n != hide and n in names}
    report = impute(bundle, given, imputed, ImputeOptions(device="cpu", self_check=True, uncertainty=4),
                    progress=progress, references={hide: held_out.files[hide]}, replace=True)
    return report, given, imputed


def _impute_sections(report: dict, hide: str, subject: str, given: dict) -> list[str]:
    """The summary's sections on the imputed contrast against the real one, and on the self-check."""
    metrics = report["comparison"][hide]
    sections = [f"## {hide} of {subject}, synthesized from {', '.join(given)}\n\n" + _table(
        ["PSNR (dB)", "SSIM", "MAE"], [[f"{metrics['psnr']:.2f}", f"{metrics['ssim']:.4f}", f"{metrics['mae']:.4f}"]])]
    if report.get("self_check"):
        sections.append("## Self-check (each given contrast hidden in turn)\n\n" + _table(
            ["hidden", "from", "PSNR (dB)", "SSIM"],
            [[r["hidden"], ", ".join(r["from"]), f"{r['psnr']:.2f}", f"{r['ssim']:.4f}"] for r in report["self_check"]]))
    return sections
