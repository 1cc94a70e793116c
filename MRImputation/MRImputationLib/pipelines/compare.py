"""`mrimpute compare SYNTH REAL --out DIR`: an error map, its picture and metrics for one synthetic volume."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.progress import Progress


def compare_files(synthetic_path: Path, real_path: Path, out: Path, mask_path: Path | None = None,
                  same_units: bool = False, progress: Progress | None = None) -> dict:
    """error.nii.gz, error.png and metrics.json in `out`; returns {"out", "metrics"}."""
    from ..core.atomic import write_text
    from ..core.io import read_volume, write_volume
    from ..evaluation.error_maps import compare_volumes
    from ..preprocessing.qc import error_figure

    progress = progress or Progress("none")
    synthetic, real = read_volume(synthetic_path), read_volume(real_path)
    mask = read_volume(mask_path) if mask_path else None
    result = compare_volumes(synthetic, real, mask, normalized=not same_units)
    out = Path(out)
    write_volume(result["error"], out / "error.nii.gz")
    error_figure(real, result["synthetic"], result["error"], out / "error.png", title=Path(synthetic_path).name,
                 mask=result["mask"])
    metrics = {k: float(v) for k, v in result["metrics"].items()}
    write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    progress.log(f"PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, MAE {metrics['mae']:.4f} "
                 f"(brain voxels, units of {Path(real_path).name} / its 99.5th percentile); error map in {out}")
    return {"out": str(out), "metrics": metrics}
