"""`mrimpute compare SYNTH REAL --out DIR`: an error map, its picture and metrics for one synthetic volume.

DIR is checked before anything is read, and written whole (a temporary sibling renamed into place):
a new or empty folder, or an earlier comparison's (replaced whole); a folder holding anything else
is refused, never emptied.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.progress import Progress

RESULT_FILES = ("error.nii.gz", "error.png", "metrics.json")


def is_result_file(path: Path) -> bool:
    """A file `compare` writes into its folder."""
    return path.name in RESULT_FILES and path.is_file() and not path.is_symlink()


def compare_files(synthetic_path: Path, real_path: Path, out: Path, mask_path: Path | None = None,
                  same_units: bool = False, progress: Progress | None = None) -> dict:
    """error.nii.gz, error.png and metrics.json in `out`; returns {"out", "metrics"}."""
    from ..core.atomic import atomic_directory
    from ..core.io import read_volume, write_volume
    from ..core.outputs import check_output_folder, check_replaceable
    from ..evaluation.error_maps import compare_volumes
    from ..preprocessing.qc import error_figure

    progress = progress or Progress("none")
    out = check_output_folder(out, "--out", replaced_whole=True)
    check_replaceable(out, "--out", is_result_file, "compare")
    synthetic, real = read_volume(synthetic_path), read_volume(real_path)
    mask = read_volume(mask_path) if mask_path else None
    result = compare_volumes(synthetic, real, mask, normalized=not same_units)
    metrics = {k: float(v) for k, v in result["metrics"].items()}
    with atomic_directory(out) as folder:
        write_volume(result["error"], folder / "error.nii.gz")
        error_figure(real, result["synthetic"], result["error"], folder / "error.png", title=Path(synthetic_path).name,
                     mask=result["mask"])
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        check_replaceable(out, "--out", is_result_file, "compare")  # nothing else was put there meanwhile
    progress.log(f"PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, MAE {metrics['mae']:.4f} "
                 f"(brain voxels, units of {Path(real_path).name} / its 99.5th percentile); error map in {out}")
    return {"out": str(out), "metrics": metrics}
