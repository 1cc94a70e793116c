"""How far from linear is the voxel-wise relation between contrasts? Least squares against a lookup table.

For every two-input scenario of a training run, fits on the run's training slices (its slice cache
and split, brain voxels) the missing contrast as (a) least squares on the two given intensities
and (b) a lookup table of the mean over a BINS x BINS grid of the two given intensities, then
scores both on the test subjects' slices. A large gap means a voxel-exact non-linear mapping is
worth having (the generator's voxel path). A diagnostic on normalised cache slices, not the
project metric (EVALUATION.md), which scores volumes on the reference grid.

    python Testing/Benchmarks/diagnose_voxel_mapping.py RUN [--bins 64]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "MRImputation"))


def brain_voxels(cache: Path, subjects: list[str]) -> np.ndarray:
    """(voxels, contrasts) intensities of the subjects' brain voxels."""
    from MRImputationLib.slice_cache import load_subject_mask, load_subject_slices

    rows = []
    for subject in subjects:
        images, _ = load_subject_slices(cache, subject)
        rows.append(np.moveaxis(images, 1, -1)[load_subject_mask(cache, subject).astype(bool)])
    return np.concatenate(rows).astype(np.float64)


def psnr(prediction: np.ndarray, truth: np.ndarray) -> float:
    return -10 * math.log10(float(np.mean((np.clip(prediction, 0, 1) - np.clip(truth, 0, 1)) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--bins", type=int, default=64)
    args = parser.parse_args()
    split = json.loads((args.run / "split.json").read_text())
    names = json.loads((args.run / "contrasts.json").read_text())["names"]
    train, test = brain_voxels(args.run / "cache", split["train"]), brain_voxels(args.run / "cache", split["test"])
    bins = args.bins
    print(f"| given -> missing | least squares (dB) | lookup table {bins}x{bins} (dB) | gain |")
    print("|---|---|---|---|")
    for target in range(len(names)):
        given = [i for i in range(len(names)) if i != target]
        if len(given) != 2:
            continue
        design = np.c_[train[:, given], np.ones(len(train))]
        weights = np.linalg.lstsq(design, train[:, target], rcond=None)[0]
        linear = np.c_[test[:, given], np.ones(len(test))] @ weights

        def cell(x: np.ndarray) -> np.ndarray:
            q = np.clip((x * bins).astype(int), 0, bins - 1)
            return q[:, 0] * bins + q[:, 1]

        sums = np.bincount(cell(train[:, given]), train[:, target], bins * bins)
        counts = np.bincount(cell(train[:, given]), minlength=bins * bins)
        looked_up = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)[cell(test[:, given])]
        looked_up = np.where(np.isnan(looked_up), linear, looked_up)  # unseen bins: fall back to least squares
        a, b = psnr(linear, test[:, target]), psnr(looked_up, test[:, target])
        print(f"| {','.join(names[i] for i in given)} -> {names[target]} | {a:.2f} | {b:.2f} | {b - a:+.2f} |")


if __name__ == "__main__":
    main()
