"""Imputation speed: the fast path against the naive one, on one 240x240x155 real case.

The full-size `mmgan-faithful` generator (random weights: speed does not depend on them) synthesizes
FLAIR from T1, T1c and T2 of a shared real case. Each path runs in its own process so its peak
resident memory (ru_maxrss) is its own:
  naive : every slice, fp32, one slice at a time
  fast  : slices with brain only, batches of 16, inference_mode (+ bf16 where asked)
The fp32 fast path's output is compared with the naive one inside the brain.

    python Testing/Benchmarks/bench_imputation.py [--case DIR] [--device cpu|cuda] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "MRImputation"))
DEFAULT_CASE = REPO.parent / "shared" / "data" / "real" / "BraTS-GLI-00001-000"

WORKER = r"""
import json, resource, sys, time
import numpy as np, torch
sys.path.insert(0, {lib!r})
from MRImputationLib.data.discovery import discover_subjects
from MRImputationLib.imputation.slice_imputer import SliceImputer, InferenceOptions
from MRImputationLib.core.io import read_volume
from MRImputationLib.preprocessing.masking import brain_mask
from MRImputationLib.core.contrasts import ContrastSet
from MRImputationLib.models.mmgan.config import preset
from MRImputationLib.models.mmgan.networks import build_generator
from MRImputationLib.preprocessing.normalization import NormalizationConfig, fit_normalization, normalize
from MRImputationLib.models.slicing import SlicingConfig

path, batch, precision, skip, device, out = {args!r}
torch.manual_seed(0)
contrasts = ContrastSet(("T1", "T1c", "T2", "FLAIR"))
subject = discover_subjects(path)[0]
volumes = {{n: read_volume(subject.files[n], n) for n in contrasts.names}}
mask = brain_mask(list(volumes.values()))
stack = np.stack([normalize(volumes[n], fit_normalization(volumes[n], mask, NormalizationConfig())).array
                  for n in contrasts.names])
config = preset("mmgan-faithful", 4)
generator = build_generator(config).eval()
imputer = SliceImputer(generator, config, SlicingConfig(size=256, crop="full", skip_empty=skip),
                     InferenceOptions(device=device, batch_size=batch, precision=precision))
scenario = contrasts.scenario_for(["T1", "T1c", "T2"])
if device == "cuda":  # warm-up: CUDA kernels and cuDNN autotuning
    imputer.predict(stack, scenario, frame=volumes["T1"], mask=mask.array > 0)
start = time.perf_counter()
result = imputer.predict(stack, scenario, frame=volumes["T1"], mask=mask.array > 0)
if device == "cuda":
    torch.cuda.synchronize()
seconds = time.perf_counter() - start
np.save(out, result[3])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
gpu = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
print(json.dumps({{"seconds": seconds, "peak_rss_mb": peak, "gpu_mb": gpu, "threads": torch.get_num_threads(),
                  "slices": int((mask.array.any(axis=(1, 2))).sum()) if skip else int(stack.shape[1])}}))
"""

PATHS = {
    "naive (every slice, fp32, batch 1)": (1, "fp32", False),
    "fast fp32 (brain slices, batch 16)": (16, "fp32", True),
    "fast bf16 (brain slices, batch 16)": (16, "bf16", True),
}


def run_path(case: Path, batch: int, precision: str, skip: bool, device: str, out: Path) -> dict:
    code = WORKER.format(lib=str(REPO / "MRImputation"), args=(str(case), batch, precision, skip, device, str(out)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, default=DEFAULT_CASE)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from MRImputationLib.core.device import cpu_has_native_bf16

    rows, outputs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (batch, precision, skip) in PATHS.items():
            if precision == "bf16" and args.device == "cpu" and not cpu_has_native_bf16():
                print(f"{name}: skipped, this CPU has no native bf16 (AVX-512 BF16/AMX); it would be emulated")
                continue
            result_file = Path(tmp) / f"{len(outputs)}.npy"
            result = run_path(args.case, batch, precision, skip, args.device, result_file)
            outputs[name] = np.load(result_file)
            rows.append((name, result))
            print(name, result, flush=True)
        from MRImputationLib.core.io import read_volume
        from MRImputationLib.preprocessing.masking import brain_mask
        from MRImputationLib.data.discovery import discover_subjects

        subject = discover_subjects(args.case)[0]
        mask = brain_mask([read_volume(p) for p in subject.files.values()]).array > 0
        naive = outputs[next(iter(PATHS))]
        differences = {name: float(np.abs(out[mask] - naive[mask]).max()) for name, out in outputs.items()}
    baseline = rows[0][1]["seconds"]
    lines = [f"Imputation of FLAIR from T1, T1c, T2 on {args.case.name} (240x240x155), full-size mmgan-faithful "
             f"generator (54.4 M parameters), device {args.device}, {rows[0][1]['threads']} threads.", "",
             "| path | slices | seconds | speed-up | peak RSS (MB) | max abs diff vs naive (brain) |",
             "|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['slices']} | {r['seconds']:.2f} | {baseline / r['seconds']:.2f}x | "
                     f"{r['peak_rss_mb']:.0f} | {differences[name]:.2e} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n\nReproduce: `python Testing/Benchmarks/bench_imputation.py`\n")


if __name__ == "__main__":
    main()
