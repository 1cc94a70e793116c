#!/usr/bin/env bash
# gpu_check.sh: one prepared check for a machine with an NVIDIA GPU, done in under 8 minutes.
#
#   Testing/Benchmarks/gpu_check.sh [DATA] [--config NAME_OR_JSON] [--budget SECONDS] [--subjects N]
#                                   [--out DIR] [--peak-tflops T] [--cpu-dry-run]
#
# On the phantom (no download; default) or on DATA (a raw folder of subjects, e.g. ../shared/data/lgg,
# of which the first --subjects are preprocessed without N4, or a folder `mrimpute preprocess` wrote):
#   1. training throughput of the mmgan-faithful design at 256 px (the trainer's own step, bf16
#      autocast, channels_last), slices/s at the preset's batch 4 and at batch 32, with the model FLOP
#      utilisation: FLOPs of one whole training step (generator and discriminator, forward and
#      backward, counted by torch.utils.flop_counter) x steps/s over the GPU's dense bf16 peak (a
#      table of known GPUs, or --peak-tflops); beside it the generator-only estimate 3 x generator_flops;
#   2. inference seconds per 240x240x155 case (the full-size generator, random weights, brain slices,
#      bf16 and fp32);
#   3. `mrimpute train` of --config (default mmgan-faithful) for as long as the time budget allows
#      (stopped with SIGINT, which writes a checkpoint: continue it with --resume), and its epochs;
# then prints one summary (also OUT/gpu_check.json). Without a CUDA device it stops at once with a
# message; --cpu-dry-run runs every step on the CPU at toy sizes, to check the script itself.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
HARD_LIMIT_S=470  # everything, preprocessing included, stays under 8 minutes

DATA="" CONFIG="mmgan-faithful" BUDGET="" SUBJECTS=6 OUT="" PEAK="" DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --config) CONFIG="$2"; shift 2 ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --subjects) SUBJECTS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --peak-tflops) PEAK="$2"; shift 2 ;;
    --cpu-dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) if [ -n "$DATA" ]; then echo "gpu_check: one data folder only (got $DATA and $1)" >&2; exit 2; fi
       DATA="$1"; shift ;;
  esac
done
if [ -n "$DATA" ] && [ ! -d "$DATA" ]; then
  echo "gpu_check: $DATA is not a folder; give a folder of subjects (or none for the phantom)." >&2; exit 2
fi

export PYTHONPATH="$REPO/MRImputation${PYTHONPATH:+:$PYTHONPATH}"
if [ "$DRY" != 1 ]; then
  if ! "$PYTHON" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    built = torch.version.cuda or "none (a CPU-only build)"
    print(f"gpu_check: no CUDA device is visible to PyTorch {torch.__version__} (its CUDA: {built}). This check "
          "measures a GPU; run it on a machine with an NVIDIA GPU and driver (nvidia-smi lists it), or use "
          "--cpu-dry-run to check the script itself on the CPU. Nothing was measured.", file=sys.stderr)
    sys.exit(3)
EOF
  then
    exit 3
  fi
fi

OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}"
mkdir -p "$OUT"
SCRIPT="$OUT/gpu_check.py"
cat > "$SCRIPT" <<'EOF'
"""The Python half of gpu_check.sh (written there, run once)."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

START = time.monotonic()
OUT, DATA, CONFIG = Path(os.environ["GC_OUT"]), os.environ.get("GC_DATA") or None, os.environ["GC_CONFIG"]
DRY, SUBJECTS = os.environ["GC_DRY"] == "1", int(os.environ["GC_SUBJECTS"])
LIMIT = float(os.environ["GC_LIMIT"])
BUDGET = float(os.environ["GC_BUDGET"]) if os.environ.get("GC_BUDGET") else None
PEAK = float(os.environ["GC_PEAK"]) if os.environ.get("GC_PEAK") else None
DEVICE = "cpu" if DRY else "cuda"
# Dense bf16 tensor-core peaks (TFLOPS, no sparsity) from the vendors' data sheets; the first match wins.
PEAKS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("GH200", 989.0), ("B200", 2250.0),
         ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0),
         ("RTX 4090", 165.0), ("RTX 6000 Ada", 364.0), ("A6000", 155.0)]

from MRImputationLib.core.contrasts import Scenario  # noqa: E402
from MRImputationLib.core.progress import Progress  # noqa: E402


def log(message: str) -> None:
    print(f"[gpu_check {time.monotonic() - START:5.0f} s] {message}", flush=True)


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def gpu_info() -> dict:
    if DEVICE != "cuda":
        return {"name": "CPU (dry run)", "peak_bf16_tflops": PEAK, "torch": torch.__version__}
    props = torch.cuda.get_device_properties(0)
    peak = PEAK or next((p for key, p in PEAKS if key in props.name), None)
    return {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1), "peak_bf16_tflops": peak,
            "torch": torch.__version__, "cuda": torch.version.cuda, "bf16": torch.cuda.is_bf16_supported()}


def prepare_data() -> tuple[Path, str]:
    """A preprocessed folder: DATA as is, its first SUBJECTS subjects preprocessed, or a phantom."""
    from MRImputationLib.preprocessing.folder import preprocess_folder
    from MRImputationLib.preprocessing.subject import PreprocessConfig

    jobs = max(1, min(SUBJECTS, (os.cpu_count() or 2) // 2))
    if DATA and (Path(DATA) / "manifest.json").exists():
        return Path(DATA), f"{DATA} (preprocessed)"
    if DATA:
        from MRImputationLib.data.discovery import discover_subjects

        raw = OUT / "raw"
        for subject in discover_subjects(DATA)[:SUBJECTS]:
            folder = raw / subject.subject
            folder.mkdir(parents=True, exist_ok=True)
            for path in [*subject.files.values(), *subject.labels.values()]:
                if not (folder / path.name).exists():
                    (folder / path.name).symlink_to(Path(path).resolve())
        config, what = PreprocessConfig(n4=False, qc=False), f"{DATA} (first {SUBJECTS} subjects, no N4)"
    else:
        from MRImputationLib.data.phantom import PhantomConfig, write_phantom

        raw = OUT / "raw"
        shape = (48, 48, 24) if DRY else (240, 240, 80)  # 80 slices: 6 subjects written and preprocessed in ~1 min
        if not raw.exists():
            write_phantom(raw, SUBJECTS, PhantomConfig(shape=shape, misalignment="none", bias_strength=0.05), seed=5)
        config = PreprocessConfig(n4=False, register=False, qc=False)
        what = f"phantom, {SUBJECTS} subjects of {'x'.join(map(str, shape))} (T1, T2, PD)"
    pre = OUT / "preprocessed"
    if not (pre / "manifest.json").exists():
        manifest = preprocess_folder(raw, pre, config, jobs=jobs)
        failed = [s["subject"] for s in manifest["subjects"] if s["status"] != "ok"]
        if failed:
            log(f"preprocessing failed for {', '.join(failed)} (see {pre / 'manifest.json'})")
    return pre, what


def _steps_per_s(trainer, dataset, batch: int, seconds: float, warmup: int = 5) -> tuple[float, int]:
    """Training steps per second of `trainer`'s step on real cached slices, after `warmup` steps."""
    scenarios = list(trainer.contrasts.scenarios())
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=2,
                                         pin_memory=DEVICE == "cuda", persistent_workers=True)
    batches = iter(loader)

    def step(i: int) -> None:
        nonlocal batches
        try:
            images, _ = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, _ = next(batches)
        real = images.to(trainer.device, non_blocking=True)
        if trainer.cuda:
            real = real.contiguous(memory_format=torch.channels_last)
        trainer.train_step(real, scenarios[i % len(scenarios)])

    for i in range(warmup):
        step(i)
    sync()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds or n < 3:
        step(n)
        n += 1
    sync()
    return n / (time.perf_counter() - start), n


def _step_flops(trainer, dataset, batch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    images = torch.stack([dataset[i][0] for i in range(batch)]).to(trainer.device)
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step(images, Scenario("0" + "1" * (len(trainer.contrasts) - 1)))
    return float(counter.get_total_flops())


def measure_training(pre: Path, peak: float | None) -> list[dict]:
    """mmgan-faithful at 256 px (toy sizes in a dry run): slices/s and model FLOP utilisation per batch size."""
    from MRImputationLib.models.family import model_preset
    from MRImputationLib.models.mmgan.networks import generator_flops
    from MRImputationLib.models.slicing import SlicingConfig
    from MRImputationLib.preprocessing.manifest import read_manifest
    from MRImputationLib.preprocessing.preprocessed import complete_subjects, contrasts_of
    from MRImputationLib.training.config import train_preset
    from MRImputationLib.training.distributed import DistributedContext
    from MRImputationLib.training.slice_cache import SliceDataset, build_cache
    from MRImputationLib.training.trainer import Trainer

    manifest = read_manifest(pre)
    contrasts = contrasts_of(manifest)
    subjects = complete_subjects(manifest, contrasts)
    model = model_preset("mmgan-reduced" if DRY else "mmgan-faithful", len(contrasts))
    if DRY:
        model = replace(model, image_size=64)
    cache = build_cache(pre, contrasts, OUT / f"cache{model.image_size}", SlicingConfig(size=model.image_size),
                        subjects=subjects)
    dataset = SliceDataset(cache, subjects)
    g_flops = generator_flops(model)
    rows = []
    for batch in ((4, 8) if DRY else (4, 32)):
        config = train_preset("mmgan-faithful", batch_size=batch, mixed_precision="auto")
        torch.manual_seed(0)
        trainer = Trainer(config, model, contrasts, dataset, OUT / f"bench_run{batch}", DistributedContext(device=DEVICE))
        steps_per_s, steps = _steps_per_s(trainer, dataset, batch, 5.0 if DRY else 25.0)
        flops = _step_flops(trainer, dataset, batch)
        achieved = flops * steps_per_s / 1e12
        rows.append({"model": model.name, "image_size": model.image_size, "batch": batch, "precision": trainer.precision,
                     "slices_per_s": round(steps_per_s * batch, 1), "timed_steps": steps,
                     "step_gflop": round(flops / 1e9, 1), "achieved_tflops": round(achieved, 2),
                     "mfu": round(achieved / peak, 4) if peak else None,
                     "generator_gflop_per_slice": round(g_flops / 1e9, 2),
                     "mfu_generator_only": round(3 * g_flops * steps_per_s * batch / 1e12 / peak, 4) if peak else None})
        log(f"training {model.name} {model.image_size} px batch {batch}: {rows[-1]['slices_per_s']} slices/s, "
            f"{rows[-1]['achieved_tflops']} TFLOPS" + (f", MFU {rows[-1]['mfu']:.1%}" if peak else ""))
        del trainer
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    return rows


def measure_inference() -> list[dict]:
    """Seconds per 240x240x155 case (toy size in a dry run): the full-size generator over a phantom's brain slices."""
    from MRImputationLib.data.phantom import PhantomConfig, make_subject
    from MRImputationLib.imputation.slice_imputer import InferenceOptions, SliceImputer
    from MRImputationLib.models.family import model_preset
    from MRImputationLib.models.mmgan.networks import build_generator
    from MRImputationLib.models.slicing import SlicingConfig
    from MRImputationLib.preprocessing.normalization import NormalizationConfig, fit_normalization, normalize

    shape = (48, 48, 24) if DRY else (240, 240, 155)
    subject = make_subject(PhantomConfig(shape=shape, misalignment="none"), seed=99)
    volumes = [subject.observed[n] for n in ("T1", "T2", "PD")]
    params = [fit_normalization(v, subject.brain_mask, NormalizationConfig()) for v in volumes]
    stack = np.stack([normalize(v, p).array for v, p in zip(volumes, params)]).astype(np.float32)
    mask = subject.brain_mask.array > 0
    model = model_preset("mmgan-reduced" if DRY else "mmgan-faithful", 3)
    if DRY:
        model = replace(model, image_size=64)
    generator = build_generator(model)
    rows = []
    for precision in ("bf16", "fp32"):
        imputer = SliceImputer(generator, model, SlicingConfig(size=model.image_size, skip_empty=True),
                               InferenceOptions(device=DEVICE, batch_size=32, precision=precision))
        times = []
        for _ in range(4):  # the first one warms up (cuDNN autotuning, allocator)
            start = time.perf_counter()
            imputer.predict(stack, Scenario("110"), frame=volumes[0], mask=mask)
            sync()
            times.append(time.perf_counter() - start)
        rows.append({"case": "x".join(map(str, shape)), "brain_slices": int(mask.any(axis=(1, 2)).sum()),
                     "precision": precision, "seconds": round(float(np.median(times[1:])), 3),
                     "first_call_s": round(times[0], 2)})
        log(f"inference {rows[-1]['case']} {precision}: {rows[-1]['seconds']} s per case")
    return rows


def train_for_budget(pre: Path, budget: float) -> dict:
    """`mrimpute train` of CONFIG until it finishes or `budget` seconds pass (then SIGINT: a checkpoint)."""
    run = OUT / "run"
    config = "tiny" if DRY else CONFIG
    command = [sys.executable, "-m", "MRImputationLib", "train", str(pre), "--out", str(run), "--config", config,
               "--device", DEVICE, "--progress", "json"] + (["--epochs", "50"] if DRY else [])
    if (run / "history.jsonl").exists():
        command.append("--resume")
    log(f"training {config} for at most {budget:.0f} s: {' '.join(command[2:])}")
    start = time.monotonic()
    with open(OUT / "train.log", "w") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            child.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGINT)  # the trainer writes a checkpoint and exits 130
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()] \
        if (run / "history.jsonl").exists() else []
    last = history[-1] if history else {}
    result = {"config": config, "budget_s": round(budget), "seconds": round(time.monotonic() - start),
              "exit_code": child.returncode, "finished": child.returncode == 0, "epochs_done": len(history),
              "last_epoch_slices_per_s": last.get("slices_per_s"), "last_val_psnr": last.get("val_psnr"),
              "best_val_psnr": max((r["val_psnr"] for r in history if "val_psnr" in r), default=None),
              "run": str(run), "log": str(OUT / "train.log")}
    if child.returncode not in (0, 130, -2):
        tail = (OUT / "train.log").read_text().splitlines()[-15:]
        log("training failed:\n" + "\n".join(tail))
    return result


def main() -> int:
    info = gpu_info()
    log(f"device: {info['name']}; output in {OUT}")
    pre, what = prepare_data()
    log(f"data ready: {what}")
    result = {"device": info, "data": what, "preprocessed": str(pre)}
    result["training_throughput"] = measure_training(pre, info.get("peak_bf16_tflops"))
    result["inference"] = measure_inference()
    left = LIMIT - (time.monotonic() - START) - 75  # room for the SIGINT checkpoint and the summary
    budget = min(BUDGET, left) if BUDGET else left
    if budget < 20:
        log(f"no time left for the budgeted training (budget {budget:.0f} s): skipped")
        result["budget_training"] = None
    else:
        result["budget_training"] = train_for_budget(pre, budget)
    result["total_s"] = round(time.monotonic() - START)
    (OUT / "gpu_check.json").write_text(json.dumps(result, indent=2))
    print_summary(result)
    return 0


def print_summary(result: dict) -> None:
    info = result["device"]
    peak = info.get("peak_bf16_tflops")
    print("\n==== gpu_check summary ====")
    print(f"device   {info['name']}" + (f", {info['memory_gib']} GiB" if "memory_gib" in info else "")
          + f", torch {info['torch']}" + (f", CUDA {info['cuda']}" if info.get("cuda") else "")
          + (f", dense bf16 peak {peak:g} TFLOPS" if peak else ", peak unknown (give --peak-tflops for MFU)"))
    print(f"data     {result['data']}")
    for r in result["training_throughput"]:
        mfu = f", MFU {r['mfu']:.1%} (generator-only estimate {r['mfu_generator_only']:.1%})" if r["mfu"] is not None else ""
        print(f"train    {r['model']} {r['image_size']} px, batch {r['batch']}, {r['precision']}: {r['slices_per_s']} "
              f"slices/s; {r['step_gflop']} GFLOP/step -> {r['achieved_tflops']} TFLOPS{mfu}")
    for r in result["inference"]:
        print(f"infer    {r['case']} case ({r['brain_slices']} brain slices), {r['precision']}: {r['seconds']} s "
              f"per case (first call {r['first_call_s']} s)")
    budget = result["budget_training"]
    if budget:
        state = "finished" if budget["finished"] else f"stopped after {budget['seconds']} s (continue: --resume)"
        psnr = f", best val PSNR {budget['best_val_psnr']:.2f} dB" if budget["best_val_psnr"] is not None else ""
        print(f"budget   {budget['config']}: {budget['epochs_done']} epoch(s), {state}, last epoch "
              f"{budget['last_epoch_slices_per_s']} slices/s{psnr}; run {budget['run']}")
    print(f"total    {result['total_s']} s; details {OUT / 'gpu_check.json'}")


if __name__ == "__main__":
    sys.exit(main())
EOF

GC_OUT="$OUT" GC_DATA="$DATA" GC_CONFIG="$CONFIG" GC_DRY="$DRY" GC_SUBJECTS="$SUBJECTS" GC_BUDGET="$BUDGET" \
GC_PEAK="$PEAK" GC_LIMIT="$HARD_LIMIT_S" \
  timeout --signal=INT --kill-after=20 $((HARD_LIMIT_S + 10)) "$PYTHON" "$SCRIPT"
