"""How far from linear is the voxel-wise relation between contrasts? Least squares against a lookup table.

For every two-input scenario of a training run, fits on the run's training slices (its slice cache
and split, brain voxels) the missing contrast as (a) the project's linear baseline (`LinearImputer`)
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


def psnr(prediction: np.ndarray, truth: np.ndarray) -> float:
    return -10 * math.log10(float(np.mean((np.clip(prediction, 0, 1) - np.clip(truth, 0, 1)) ** 2)))


def main() -> None:
    from MRImputationLib.models.linear import LinearImputer
    from MRImputationLib.core.contrasts import ContrastSet
    from MRImputationLib.training.slice_cache import SliceDataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--bins", type=int, default=64)
    args = parser.parse_args()
    split = json.loads((args.run / "split.json").read_text())
    contrasts = ContrastSet.from_dict(json.loads((args.run / "contrasts.json").read_text()))
    train = list(SliceDataset(args.run / "cache", split["train"]).subject_stacks())
    test = list(SliceDataset(args.run / "cache", split["test"]).subject_stacks())
    baseline = LinearImputer(contrasts).fit(train)  # the project's linear baseline, on the same slices
    bins = args.bins

    def cell(stacks, given: list[int]) -> np.ndarray:
        """The lookup-table bin of every brain voxel's two given intensities."""
        q = np.concatenate([np.clip((stack[given][:, mask > 0] * bins).astype(int), 0, bins - 1) for stack, mask in stacks], 1)
        return q[0] * bins + q[1]

    def brain(stacks, channel: int) -> np.ndarray:
        return np.concatenate([stack[channel][mask > 0] for stack, mask in stacks])

    print(f"| given -> missing | least squares (dB) | lookup table {bins}x{bins} (dB) | gain |")
    print("|---|---|---|---|")
    for scenario in contrasts.scenarios():
        given = [i for i, g in enumerate(scenario.mask) if g]
        if len(given) != 2:
            continue
        target = scenario.mask.index(False)
        linear = np.concatenate([baseline.predict(stack, scenario)[target][mask > 0] for stack, mask in test])
        sums = np.bincount(cell(train, given), brain(train, target), bins * bins)
        counts = np.bincount(cell(train, given), minlength=bins * bins)
        looked_up = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)[cell(test, given)]
        looked_up = np.where(np.isnan(looked_up), linear, looked_up)  # unseen bins: fall back to least squares
        truth = brain(test, target)
        a, b = psnr(linear, truth), psnr(looked_up, truth)
        names = contrasts.names
        print(f"| {','.join(names[i] for i in given)} -> {names[target]} | {a:.2f} | {b:.2f} | {b - a:+.2f} |")


if __name__ == "__main__":
    main()
