"""Preprocessing speed and accuracy against ANTsPy's defaults, on the 3 real cases at full size (240x240x155).

Registration: a contrast is moved by a known random rigid transform (rotation <= 8 deg about each axis,
translation <= 8 mm) and, separately, a known affine one (+ scaling <= 5 %, shear <= 0.05), then
registered back onto another contrast of the same case (multi-modal). Residual = mean distance
between the recovered and the true fixed->moving mapping over the fixed image's brain voxels. The
contrasts of a case are not perfectly co-registered in the data itself, so the residual has a
floor: the "none (floor)" row registers the unmoved pair (the BraTS-MET T1n is ~1.5 mm off its other
contrasts, so T2 goes onto FLAIR there).
  ours : MRImputationLib.preprocessing.registration.register (SimpleITK, tuned)
  ANTs : ants.registration(fixed, moving, type_of_transform="Rigid" / "Affine"), ANTsPy defaults

N4: the real T1 carries its own bias field, so it is first removed (2 rounds of a slow, strong N4);
the result is multiplied by a known field (exp of a random cubic polynomial, +-25 % in the brain).
Field correlation = Pearson correlation of the log of estimated and true fields inside the brain.
  ours : MRImputationLib.preprocessing.bias.correct_bias (no mask given: its own foreground fallback)
  ANTs : ants.n4_bias_field_correction(img, shrink_factor=4, return_bias_field=True), as is (its
         default mask is the whole image) and with the brain mask (fairer on accuracy)

    python Testing/Benchmarks/bench_preprocessing.py [--data ../shared/data/real] [--repeats 3]
        [--baseline-repeats 1] [--out FILE.md] [--cases NAME ...] [--skip registration|n4]

Seconds are the minimum over the runs (--repeats for ours, --baseline-repeats for ANTs, whose runs
take 20-100 s each; the machine is shared: the minimum is the least disturbed); residuals and
correlations are the mean over the runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "MRImputation"))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "real"

from MRImputationLib.preprocessing.bias import N4Config, correct_bias  # noqa: E402
from MRImputationLib.core.io import read_volume  # noqa: E402
from MRImputationLib.preprocessing.registration import (  # noqa: E402
    RegistrationConfig,
    matrix_from_ants_transform,
    mean_displacement_mm,
    register,
)
from MRImputationLib.core.volume import Volume  # noqa: E402

# case: (fixed, moving, N4 contrast), as named in the file names
CASES = {
    "BraTS-GLI-00001-000": ("t1n", "t2w", "t1n"),
    "BraTS-MET-00110-000": ("t2f", "t2w", "t1n"),
    "TCGA-DU-7294": ("t1", "t2", "t1"),
}
CLEANING = N4Config(shrink_mm=4.0, iterations=(100, 100, 100, 100), convergence_threshold=1e-4,
                    wiener_noise=0.01, crop_to_mask=False)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def find(folder: Path, name: str) -> Path:
    for sep in ("-", "_"):
        path = folder / f"{folder.name}{sep}{name}.nii.gz"
        if path.exists():
            return path
    raise FileNotFoundError(f"{folder}: no {name} volume")


def brain_points(volume: Volume, step: int = 2) -> np.ndarray:
    zyx = np.argwhere(volume.array[::step, ::step, ::step] > 0) * step
    return volume.index_to_physical(zyx[:, ::-1])


def random_matrix(seed: int, centre: np.ndarray, affine: bool) -> np.ndarray:
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    a = np.array(sitk.Euler3DTransform((0, 0, 0), *np.deg2rad(rng.uniform(-8, 8, 3))).GetMatrix()).reshape(3, 3)
    if affine:
        shear = np.eye(3)
        shear[0, 1], shear[0, 2], shear[1, 2] = rng.uniform(-0.05, 0.05, 3)
        a = a @ np.diag(1 + rng.uniform(-0.05, 0.05, 3)) @ shear
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = a, centre + rng.uniform(-8, 8, 3) - a @ centre
    return m


def misalign(volume: Volume, matrix: np.ndarray) -> Volume:
    """out(p) = volume(matrix·p) with plain sitk.Resample, on the volume's own grid."""
    import SimpleITK as sitk

    transform = sitk.AffineTransform(3)
    transform.SetMatrix(matrix[:3, :3].ravel().tolist())
    transform.SetTranslation(matrix[:3, 3].tolist())
    image = sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)
    return Volume.from_sitk(sitk.Resample(image, image, transform, sitk.sitkLinear, 0.0), contrast=volume.contrast)


def timed(function, repeats: int):
    """(min seconds, list of results) over `repeats` calls."""
    seconds, results = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        results.append(function())
        seconds.append(time.perf_counter() - start)
    return min(seconds), results


def ants_registration_matrix(fixed: Volume, moving: Volume, kind: str) -> np.ndarray:
    import ants

    result = ants.registration(fixed.to_ants(), moving.to_ants(), type_of_transform=kind)
    return matrix_from_ants_transform(result["fwdtransforms"][0])


def bench_registration(case: str, folder: Path, repeats: int, baseline_repeats: int, seed: int) -> list[tuple]:
    fixed_name, moving_name, _ = CASES[case]
    fixed = read_volume(find(folder, fixed_name), contrast=fixed_name)
    moving = read_volume(find(folder, moving_name), contrast=moving_name)
    points = brain_points(fixed)
    pair = f"{moving_name} onto {fixed_name}"
    rows = []
    floor = register(moving, fixed, RegistrationConfig(kind="rigid"))
    rows.append((case, f"registration {pair}, none (floor)", "ours rigid", 1, floor.seconds,
                 mean_displacement_mm(floor.fixed_to_moving, np.eye(4), points)))
    for kind in ("rigid", "affine"):
        moved_by = random_matrix(seed, points.mean(0), affine=kind == "affine")
        truth = np.linalg.inv(moved_by)
        misaligned = misalign(moving, moved_by)
        start = mean_displacement_mm(np.eye(4), truth, points)
        step = f"registration {pair}, {kind} misalignment ({start:.1f} mm)"
        methods = [(f"ours {kind}", repeats,
                    lambda: register(misaligned, fixed, RegistrationConfig(kind=kind)).fixed_to_moving)]
        for ants_kind in (("Rigid", "Affine") if kind == "rigid" else ("Affine",)):
            methods.append((f'ANTs "{ants_kind}" defaults', baseline_repeats,
                            lambda k=ants_kind: ants_registration_matrix(fixed, misaligned, k)))
        for method, runs, run in methods:
            seconds, matrices = timed(run, runs)
            residual = float(np.mean([mean_displacement_mm(m, truth, points) for m in matrices]))
            rows.append((case, step, method, runs, seconds, residual))
            log(f"  {case} | {step} | {method}: {seconds:.2f} s, residual {residual:.2f} mm")
    return rows


def field_correlation(estimated: np.ndarray, true: np.ndarray, mask: np.ndarray) -> float:
    inside = mask & (estimated > 0)
    return float(np.corrcoef(np.log(estimated[inside]), np.log(true[inside]))[0, 1])


def known_field(mask: np.ndarray, seed: int, strength: float = 0.25) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z, y, x = (np.linspace(-1, 1, n, dtype=np.float32) for n in mask.shape)
    log_field = np.zeros(mask.shape, np.float32)
    for i in range(4):
        for j in range(4 - i):
            for k in range(1 if i + j == 0 else 0, 4 - i - j):
                log_field += (np.float32(rng.normal()) * np.outer(z**k, y**j))[:, :, None] * (x**i)[None, None, :]
    log_field -= 0.5 * (log_field[mask].max() + log_field[mask].min())
    log_field *= np.log1p(strength) / np.abs(log_field[mask]).max()
    return np.exp(log_field)


def bench_n4(case: str, folder: Path, repeats: int, baseline_repeats: int, seed: int) -> list[tuple]:
    import ants

    name = CASES[case][2]
    volume = read_volume(find(folder, name), contrast=name)
    brain = volume.array > 0
    mask = volume.with_array(brain.astype(np.uint8))
    clean = volume.array.astype(np.float32)
    for _ in range(2):
        clean = correct_bias(volume.with_array(clean), mask, CLEANING).volume.array
    field = known_field(brain, seed)
    observed = volume.with_array((clean * field).astype(np.float32))
    step = f"N4 of {name} x known field"
    rows = []
    image, brain_ants = observed.to_ants(), mask.to_ants()
    methods = [
        ("ours (no mask given)", repeats, lambda: correct_bias(observed).bias_field.array),
        ("ANTs n4 shrink_factor=4", baseline_repeats, lambda: Volume.from_ants(
            ants.n4_bias_field_correction(image, shrink_factor=4, return_bias_field=True)).array),
        ("ANTs n4 shrink_factor=4, brain mask", baseline_repeats, lambda: Volume.from_ants(
            ants.n4_bias_field_correction(image, mask=brain_ants, shrink_factor=4, return_bias_field=True)).array),
    ]
    for method, runs, run in methods:
        seconds, fields = timed(run, runs)
        correlation = float(np.mean([field_correlation(f, field, brain) for f in fields]))
        rows.append((case, step, method, runs, seconds, correlation))
        log(f"  {case} | {step} | {method}: {seconds:.2f} s, field correlation {correlation:.3f}")
    return rows


def table(rows: list[tuple]) -> str:
    lines = ["| case | step | method | runs | seconds (min) | residual mm / field correlation |",
             "|---|---|---|---:|---:|---:|"]
    for case, step, method, runs, seconds, value in rows:
        shown = f"{value:.3f}" if step.startswith("N4") else f"{value:.2f} mm"
        lines.append(f"| {case} | {step} | {method} | {runs} | {seconds:.2f} | {shown} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding the real cases")
    parser.add_argument("--repeats", type=int, default=3, help="runs of our methods")
    parser.add_argument("--baseline-repeats", type=int, default=1, help="runs of each ANTs baseline")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--skip", nargs="*", default=[], choices=["registration", "n4"])
    args = parser.parse_args(argv)
    import ants
    import SimpleITK as sitk

    header = (f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}; "
              f"SimpleITK {sitk.Version.VersionString()}, ANTsPy {getattr(ants, '__version__', '?')}")
    log(header)
    rows = []
    for seed, case in enumerate(args.cases):
        folder = args.data.resolve() / case
        if "registration" not in args.skip:
            rows += bench_registration(case, folder, args.repeats, args.baseline_repeats, seed)
        if "n4" not in args.skip:
            rows += bench_n4(case, folder, args.repeats, args.baseline_repeats, seed)
    text = f"{header}\n\n{table(rows)}\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
