"""`mrimpute impute`: the given contrasts of one patient -> the missing ones, on the reference grid.

Inputs (any orientation and spacing) -> reference grid (the model's reference contrast if given,
else the finest grid) -> N4 and registration as the model was trained -> brain mask ->
normalization -> the generator, slice-wise -> volumes in normalized units × 1000 (0 = the 0.5th,
1000 = the 99.5th percentile inside the brain, the units the model works in). Optional: K
stochastic passes for a per-voxel standard deviation, a self-check that hides each given contrast
in turn, and error maps against a real volume.

OUT is checked before anything is read (core/outputs.py): a new or empty folder, or, with
`replace`, one holding only an earlier imputation's files. It is locked while the run lasts (a
lock file beside it, core/locking.py), and the result is written whole into a temporary sibling
that becomes OUT only when everything succeeded (core/atomic.py): never a mix of two runs.
References (`--reference`) are read and checked before any work.
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_directory
from ..core.contrasts import Scenario, by_canonical_name
from ..core.device import pick_device, pick_precision
from ..core.errors import InputError
from ..core.locking import FolderLock, sibling_lock
from ..core.outputs import check_output_folder, check_replaceable
from ..core.progress import Progress
from ..evaluation.error_maps import SYNTHETIC_SCALE


@dataclass
class ImputeOptions:
    """Settings of one imputation; every one is recorded in report.json."""

    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 (safe default) | bf16 | fp16 | auto (bf16 where the hardware has it)
    batch_size: int = 16
    n4: bool | None = None  # None: as the model was trained
    register: bool = True
    uncertainty: int = 0  # stochastic passes (dropout on); 0 = none
    seed: int = 0
    self_check: bool = False
    write_registered: bool = False


def _check_inputs(model, inputs: dict) -> Scenario:
    names = model.contrasts.names
    given = {k: Path(v) for k, v in by_canonical_name(inputs, "--input").items()}
    unknown = [k for k in given if k not in names]
    if unknown:
        raise InputError(f"contrast {', '.join(unknown)} is not known to this model ({model.info.get('name')}); "
                         f"it uses {', '.join(names)}.")
    if not given:
        raise InputError(f"no input given; pass at least one of {', '.join(names)} as --input NAME=PATH.")
    if set(given) == set(names):
        raise InputError(f"every contrast of the model ({', '.join(names)}) is given: nothing is missing to synthesize.")
    scenario = model.contrasts.scenario_for(given)
    trained = [s.bits for s in model.scenarios]
    if scenario.bits not in trained:
        served = "; ".join(Scenario(bits).describe(model.contrasts) for bits in trained)
        raise InputError(f"this model was not trained for {scenario.describe(model.contrasts)} (scenario {scenario.bits}); "
                         f"it serves: {served}. Give the inputs of one of those, or choose a model that serves this "
                         "combination (`mrimpute models`).")
    return scenario


def _check_overlap(volumes: dict, mask: np.ndarray, reference: str) -> None:
    for name, volume in volumes.items():
        inside = np.abs(volume.array[mask]) > 0 if mask.any() else np.zeros(1, bool)
        if name != reference and inside.mean() < 0.5:
            raise InputError(f"{name} ({volume.source}) barely overlaps {reference} after registration "
                             f"({inside.mean():.0%} of the brain): are they the same patient and session?")


# What an imputation writes into OUT: a folder holding only these may be replaced whole (--replace).
RESULT_FILE = re.compile(r"^(report\.json|brain_mask\.nii\.gz|[A-Za-z0-9]+_(synthetic|uncertainty|registered|error)"
                         r"\.nii\.gz|[A-Za-z0-9]+_error\.png)$")


def is_result_file(path: Path) -> bool:
    """A file an imputation writes into OUT."""
    return path.is_file() and not path.is_symlink() and bool(RESULT_FILE.match(path.name))


class _Staging:
    """The result folder being written (a temporary sibling of OUT, renamed into place whole at the end)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.files: list[str] = []

    def path(self, name: str) -> Path:
        self.files.append(name)
        return self.folder / name


def impute(model_path: str | Path, inputs: dict, out: str | Path, options: ImputeOptions | None = None,
           progress: Progress | None = None, references: dict | None = None, replace: bool = False) -> dict:
    """Synthesize the missing contrasts; returns the report (also written as OUT/report.json).

    OUT must be new or empty, or (with `replace`) hold an earlier imputation, which is replaced whole.
    On CPU it uses every core, and gives the caller's torch thread count back when done (Slicer
    and training code in the same process keep theirs)."""
    progress = progress or Progress("none")
    out = check_output_folder(out, "--out", replaced_whole=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FolderLock(sibling_lock(out), f"--out {out}", progress.log):
        check_replaceable(out, "--out", is_result_file, "impute", replace,
                          "add --replace to replace it whole, or give a new or empty folder")
        import torch

        threads = torch.get_num_threads()
        try:
            return _impute(model_path, inputs, out, options, progress, references, replace)
        finally:
            torch.set_num_threads(threads)


def _impute(model_path: str | Path, inputs: dict, out: Path, options: ImputeOptions | None,
            progress: Progress, references: dict | None, replace: bool) -> dict:
    """impute()'s stages: load and check, preprocess, normalize and stack, synthesize, write."""
    options = options or ImputeOptions()
    timings: dict = {}
    start = time.monotonic()
    model, scenario, device, precision, given, real = _load_and_check(model_path, inputs, options, progress,
                                                                      references or {})
    contrasts = model.contrasts
    timings["read_s"] = round(time.monotonic() - start, 2)

    with _timed(timings, "preprocess_s"):
        pre, mask, n4 = _preprocess(model, given, options, progress)
    reference = pre.record["reference"]

    params, frame, stack = _normalize_and_stack(model, pre, reference)
    imputer = _make_imputer(model, device, precision, options.batch_size)
    with _timed(timings, "synthesize_s"):
        progress.update("synthesize", 0.0, scenario.describe(contrasts))
        output = imputer.predict(stack, scenario, frame=frame, mask=mask)
    progress.update("synthesize", 1.0, "done")

    with atomic_directory(out) as folder:
        staging = _Staging(folder)
        label = " ".join(str(model.info.get(k) or "") for k in ("name", "version")).strip()
        written: dict = {"synthetic": _write_scaled(staging, output, scenario, contrasts, frame, "synthetic", label),
                         "uncertainty": {}, "registered": {}}
        written["registered"] = _write_mask_and_registered(staging, pre, options.write_registered)
        if options.uncertainty:
            with _timed(timings, "uncertainty_s"):
                std = uncertainty(model, stack, scenario, frame, mask, imputer.slicing, imputer.options, options,
                                  progress)
                written["uncertainty"] = _write_scaled(staging, std, scenario, contrasts, frame, "uncertainty",
                                                       label)
        report = _report(model, scenario, reference, inputs, device, precision, options, pre, written)
        if options.self_check:
            with _timed(timings, "self_check_s"):
                report["self_check"] = self_check(imputer, stack, scenario, contrasts, frame, mask, params,
                                                  pre.volumes, progress, [s.bits for s in model.scenarios])
        if real:
            report["comparison"] = _compare_with_references(real, written, staging, frame, pre.mask, n4, progress)
        timings["total_s"] = round(time.monotonic() - start, 2)
        report["timings"] = timings
        staging.path("report.json").write_text(json.dumps(report, indent=2, default=str))
        check_replaceable(out, "--out", is_result_file, "impute", replace)  # nothing else was put there meanwhile
    progress.log(f"wrote {', '.join(written['synthetic'].values())} to {out} in {timings['total_s']} s")
    return report


@contextmanager
def _timed(timings: dict, key: str):
    """Record the seconds the block took as timings[key] (not when it raises)."""
    t = time.monotonic()
    yield
    timings[key] = round(time.monotonic() - t, 2)


def _load_and_check(model_path: str | Path, inputs: dict, options: ImputeOptions, progress: Progress,
                    references: dict) -> tuple:
    """The model, the scenario the inputs make, the device and precision, the given volumes as read, and the
    reference volumes as read (checked before any work)."""
    import torch

    from ..core.io import read_volume
    from ..training.run_folder import load_run_or_bundle
    from .models import resolve_model

    model = load_run_or_bundle(resolve_model(model_path, "--model", progress.log))
    scenario = _check_inputs(model, inputs)
    device = pick_device(options.device, progress)
    precision = pick_precision(options.precision, device)
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    progress.log(f"{scenario.describe(model.contrasts)} with {model.info.get('name')} {model.info.get('version')} "
                 f"on {device} ({precision})")
    given = {k: read_volume(v, contrast=k) for k, v in by_canonical_name(inputs, "--input").items()}
    return model, scenario, device, precision, given, _read_references(references, model.contrasts, scenario)


def _read_references(references: dict, contrasts, scenario: Scenario) -> dict:
    """The `--reference` volumes, read before any work: each a contrast this run synthesizes, in a readable file."""
    from ..core.io import read_volume

    missing = scenario.missing(contrasts)
    named = by_canonical_name(references, "--reference")
    for name in named:
        if name not in missing:
            known = "is not a contrast of this model" if name not in contrasts.names else "is given, not synthesized"
            raise InputError(f"--reference {name}: {name} {known}; a reference is a real volume of a synthesized "
                             f"contrast ({', '.join(missing)}). Leave it out or name one of those.")
    real = {}
    for name, path in named.items():
        try:
            real[name] = read_volume(path, contrast=name)
        except InputError as error:
            raise InputError(f"--reference {name}: {error}") from None
    return real


def _preprocess(model, given: dict, options: ImputeOptions, progress: Progress) -> tuple:
    """The given volumes on the reference grid as the model was trained: (preprocessed, brain mask, n4 used)."""
    from ..preprocessing.subject import PreprocessConfig, check_contrasts_vary, preprocess_volumes

    trained = model.as_trained
    n4 = trained.n4 if options.n4 is None else options.n4
    reference = model.contrasts.reference if model.contrasts.reference in given else None
    pre = preprocess_volumes("input", given, PreprocessConfig(reference=reference, register=options.register, n4=n4,
                                                              registration_kind=trained.registration,
                                                              qc=False),
                             on_progress=progress.callback("preprocess"))
    mask = pre.mask.array > 0
    _check_overlap(pre.volumes, mask, pre.record["reference"])
    check_contrasts_vary(pre)
    return pre, mask, n4


def _normalize_and_stack(model, pre, reference: str) -> tuple:
    """(normalization per contrast, the reference volume as frame, the model's input stack; absent ones zero)."""
    from ..preprocessing.normalization import fit_normalization, normalize

    contrasts = model.contrasts
    params = {name: fit_normalization(v, pre.mask, model.as_trained.normalization) for name, v in pre.volumes.items()}
    frame = pre.volumes[reference]
    stack = np.zeros((len(contrasts), *frame.shape), np.float32)
    for name, volume in pre.volumes.items():
        stack[contrasts.index(name)] = normalize(volume, params[name]).array
    return params, frame, stack


def _make_imputer(model, device: str, precision: str, batch_size: int):
    """The model's generator as a SliceImputer for inference (slices without brain always skipped)."""
    from ..imputation.slice_imputer import InferenceOptions, SliceImputer

    slicing = replace(model.slicing, skip_empty=True)  # at inference, slices without brain are always skipped
    inference = InferenceOptions(device=device, batch_size=batch_size, precision=precision,
                                 flip_average=model.flip_average)
    return SliceImputer(model.generator, model.model_config, slicing, inference)


def _write_scaled(staging: _Staging, arrays: np.ndarray, scenario: Scenario, contrasts, frame, kind: str,
                  model_label: str = "") -> dict:
    """Each missing contrast's array, in units × SYNTHETIC_SCALE, as <C>_<kind>.nii.gz, its header's descrip
    saying it is synthetic and which model made it (core/labels.py); returns name -> file."""
    from ..core.io import write_volume
    from ..core.labels import nifti_description

    files = {}
    for name in scenario.missing(contrasts):
        volume = frame.with_array((arrays[contrasts.index(name)] * SYNTHETIC_SCALE).astype(np.float32), contrast=name)
        write_volume(volume, staging.path(f"{name}_{kind}.nii.gz"),
                     description=nifti_description(name, kind, model_label))
        files[name] = f"{name}_{kind}.nii.gz"
    return files


def _write_mask_and_registered(staging: _Staging, pre, write_registered: bool) -> dict:
    """The brain mask, and if asked the given contrasts as registered; returns name -> registered file."""
    from ..core.io import write_volume

    registered = {}
    write_volume(pre.mask, staging.path("brain_mask.nii.gz"), dtype=np.uint8)
    if write_registered:
        for name, volume in pre.volumes.items():
            write_volume(volume, staging.path(f"{name}_registered.nii.gz"), dtype=np.float32)
            registered[name] = f"{name}_registered.nii.gz"
    return registered


def _report(model, scenario: Scenario, reference: str, inputs: dict, device: str, precision: str,
            options: ImputeOptions, pre, written: dict) -> dict:
    """report.json's record of the run (self-check, comparison and timings are added after)."""
    contrasts = model.contrasts
    return {
        "model": {k: model.info.get(k) for k in ("name", "version")},
        "model_sha256": {k: v.get("sha256") for k, v in model.info.get("files", {}).items()},
        "scenario": scenario.bits, "given": list(scenario.available(contrasts)),
        "synthesized": list(scenario.missing(contrasts)), "reference": reference,
        "inputs": {k: str(v) for k, v in inputs.items()}, "device": device, "precision": precision,
        "options": asdict(options), "units": f"normalized x {SYNTHETIC_SCALE:g}: 0 = 0.5th, "
                                                f"{SYNTHETIC_SCALE:g} = 99.5th percentile inside the brain",
        "preprocessing": pre.record["steps"], "files": written,
    }


def uncertainty(model, stack, scenario, frame, mask, slicing, inference, options, progress) -> np.ndarray:
    """Per-voxel standard deviation over K passes with the generator's dropout on (seeded)."""
    import copy
    from dataclasses import replace

    import torch

    from ..imputation.slice_imputer import SliceImputer

    torch.manual_seed(options.seed)
    stochastic = SliceImputer(copy.deepcopy(model.generator), model.model_config, slicing,
                            replace(inference, stochastic=True))
    passes = []
    for k in range(options.uncertainty):
        progress.update("uncertainty", k / options.uncertainty, f"stochastic pass {k + 1} of {options.uncertainty}")
        passes.append(stochastic.predict(stack, scenario, frame=frame, mask=mask))
    progress.update("uncertainty", 1.0, "done")
    return np.std(np.stack(passes), axis=0)


def _hidden(scenario: Scenario, i: int) -> Scenario:
    return Scenario("".join("0" if j == i else b for j, b in enumerate(scenario.bits)))


def self_check(imputer, stack, scenario, contrasts, frame, mask, params, volumes, progress,
               served: list[str] | None = None) -> list[dict]:
    """Hide each given contrast in turn, synthesize it from the others, score it against the real one
    (only where the model serves the scenario that leaves; `served` None: every scenario)."""
    from ..evaluation.metrics import project_metrics

    rows = []
    given = [i for i, a in enumerate(scenario.mask) if a]
    checks = [i for i in given if len(given) > 1 and (served is None or _hidden(scenario, i).bits in served)]
    for n, i in enumerate(checks):
        name = contrasts.names[i]
        hidden = _hidden(scenario, i)
        progress.update("self-check", n / len(checks), f"hiding {name}")
        predicted = imputer.predict(stack, hidden, frame=frame, mask=mask)[i]
        in_units = predicted.astype(np.float64) * params[name].scale + params[name].offset
        metrics = project_metrics(in_units.astype(np.float32), volumes[name].array.astype(np.float32), mask)
        rows.append({"hidden": name, "from": list(hidden.available(contrasts)), "scenario": hidden.bits,
                     **{k: metrics[k] for k in ("psnr", "ssim", "mae")}})
    if not checks:
        progress.log("self-check: no given contrast can be hidden (one given, or the model serves no scenario "
                     "with one fewer)")
    return rows


def _compare_with_references(references: dict, written: dict, staging: _Staging, frame, mask, n4: bool,
                             progress) -> dict:
    """Error maps against real volumes (read by _read_references), brought through the same N4 and registration
    as the inputs."""
    from ..core.io import read_volume, write_volume
    from ..evaluation.error_maps import compare_volumes
    from ..preprocessing.qc import error_figure

    results = {}
    for name, real in references.items():
        synthetic = read_volume(staging.folder / written["synthetic"][name], contrast=name)
        if n4:
            from ..preprocessing.bias import correct_bias
            from ..preprocessing.masking import head_mask

            real = correct_bias(real, mask=head_mask(real)).volume
        from ..preprocessing.registration import register

        registered = register(real, frame).volume
        result = compare_volumes(synthetic, registered, mask)
        write_volume(result["error"], staging.path(f"{name}_error.nii.gz"))
        error_figure(registered, result["synthetic"], result["error"], staging.path(f"{name}_error.png"),
                     title=f"{name}: synthetic vs real", mask=result["mask"])
        results[name] = result["metrics"]
        progress.log(f"{name}: PSNR {result['metrics']['psnr']:.2f} dB, SSIM {result['metrics']['ssim']:.3f} "
                     "against the real volume")
    return results
