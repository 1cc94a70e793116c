"""The command line `mrimpute` (also `python -m MRImputationLib`): the single process contract.

Exit codes: 0 done, 1 failed, 2 bad input (the message names the input and the fix), 130 cancelled.
With `--progress json` every long command prints one JSON event per line (core/events.py). The
Slicer modules and MRImputationTraining/train.py run these commands in child processes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .core.cancellation import cancel_on_signals
from .core.errors import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, Cancelled, InputError
from .core.options import non_negative_float, non_negative_int, positive_float, positive_int
from .core.progress import Progress


MODEL_HELP = "a model bundle (folder or .zip), a training run folder, or a model name (see `mrimpute models`)"


def _shape(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.replace("x", ",").split(",")]
    if len(parts) != 3 or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"shape {text!r}: give three sizes of at least 8, e.g. 64,64,48")
    return tuple(parts)


def _comma_list(text: str) -> tuple[str, ...]:
    """Split "T1, T2,PD" into ("T1", "T2", "PD"): contrast or subject names."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", choices=("bar", "json", "none"), default=None,
                        help="progress as a bar (default on a terminal), JSON lines (for Slicer), or none")


def cmd_phantom(args: argparse.Namespace, progress: Progress) -> dict:
    from .data.phantom import PhantomConfig, write_phantom

    config = PhantomConfig(shape=args.shape, contrasts=args.contrasts, misalignment=args.misalignment,
                           lesion=not args.no_lesion, bias_strength=args.bias, noise=args.noise)
    folders = write_phantom(Path(args.out), args.subjects, config, seed=args.seed,
                            on_progress=progress.callback("phantom"))
    progress.log(f"wrote {len(folders)} phantom subject(s) to {args.out}")
    return {"out": str(args.out), "subjects": [str(f) for f in folders]}


def cmd_preprocess(args: argparse.Namespace, progress: Progress) -> dict:
    from .preprocessing.folder import preprocess_folder
    from .preprocessing.subject import PreprocessConfig

    config = PreprocessConfig(reference=args.reference, register=not args.no_register,
                              registration_kind=args.registration, n4=not args.no_n4, qc=not args.no_qc)
    manifest = preprocess_folder(args.input, args.out, config, jobs=args.jobs, progress=progress,
                                 contrasts=args.contrasts)
    failed = [s for s in manifest["subjects"] if s["status"] != "ok"]
    progress.log(f"preprocessed {len(manifest['subjects']) - len(failed)} of {len(manifest['subjects'])} "
                 f"subject(s) into {args.out} (manifest: {Path(args.out) / 'manifest.json'})")
    if failed:
        names = ", ".join(s["subject"] for s in failed)
        error = InputError if all(s.get("bad_input") for s in failed) else RuntimeError
        raise error(f"{len(failed)} subject(s) failed ({names}); the others were written. "
                    f"Details are in {Path(args.out) / 'manifest.json'}.")
    return {"out": str(args.out), "subjects": len(manifest["subjects"])}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `mrimpute train`: the training, then the steps after it (pipelines/after_training.py)."""
    parser.add_argument("data", help="a preprocessed folder (with manifest.json) or a raw folder of subjects")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, cache)")
    parser.add_argument("--config", default="mmgan-faithful",
                        help="preset (mmgan-faithful, seed-ixi, tiny, cyclegan-unet/-resnet/-tiny, vae-unet, "
                             "vae-unet-tiny) or a .json file of TrainConfig settings; "
                             "ignored with --resume, which continues with the run's own config.json")
    parser.add_argument("--epochs", type=positive_int, help="override the preset's epochs")
    parser.add_argument("--batch-size", type=positive_int, help="override the preset's batch size")
    parser.add_argument("--lr", type=positive_float, help="override the preset's learning rate")
    parser.add_argument("--image-size", type=positive_int, help="network input size (a power of two)")
    parser.add_argument("--steps-per-epoch", type=positive_int, help="cap the steps of an epoch (bounded-time runs)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads of the training process (default: the cores not already busy, per the "
                             "1-minute load average; at most OMP_NUM_THREADS when set)")
    parser.add_argument("--curriculum", help="mmgan, two-stage, none, or a .json file of stages")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--contrasts", "--modalities", dest="contrasts", type=_comma_list, default=None,
                        help="the model's contrasts, e.g. T1,T1c,FLAIR (default: those every subject has)")
    parser.add_argument("--split", type=Path, help="a split.json (train/val/test subject lists) to use")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    parser.add_argument("--jobs", type=positive_int, default=1, help="parallel preprocessing of raw data")
    after = parser.add_argument_group("after training (once the last epoch is done)")
    after.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=False,
                       help="evaluate on the run's test subjects into RUN/evaluation (default: no)")
    after.add_argument("--export", action=argparse.BooleanOptionalAction, default=None,
                       help="write the model bundle, named after the run (default: only with --bundle or --install)")
    after.add_argument("--bundle", type=Path, metavar="PATH",
                       help="where the bundle goes (default RUN/bundle; a path ending in .zip writes a zip)")
    after.add_argument("--install", action="store_true",
                       help="install the bundle where MR Imputation lists its models (see --models-folder)")
    after.add_argument("--models-folder", type=Path, metavar="DIR",
                       help="where --install puts it (default $MRIMPUTATION_MODELS, else ~/.mrimputation/models, "
                            "where MR Imputation lists models)")
    _add_progress(parser)


def cmd_train(args: argparse.Namespace, progress: Progress) -> dict:
    from .pipelines.after_training import AfterTraining
    from .pipelines.train import check_train_data, train_run

    data, out = Path(args.data), Path(args.out)
    export = args.export if args.export is not None else bool(args.bundle or args.install)
    after = AfterTraining(evaluate=args.evaluate, export=export, bundle=args.bundle, install=args.install,
                          models_folder=args.models_folder)
    check_train_data(data, out, args.resume)
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads {args.threads}: give at least 1, or leave it out for the adaptive choice.")
    after.check(out)
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                 "steps_per_epoch": args.steps_per_epoch, "curriculum": args.curriculum, "threads": args.threads}
    if args.image_size:
        overrides["model_overrides"] = {"image_size": args.image_size}
    if len(after.steps) > 1:
        progress.log(f"step 1/{len(after.steps)}: training into {out}")
    summary = train_run(data, out, args.config, overrides, device=args.device, resume=args.resume,
                        contrast_names=args.contrasts, split_file=args.split, jobs=args.jobs, progress=progress)
    return after.run(out, data, summary, args.device, progress)


def cmd_evaluate(args: argparse.Namespace, progress: Progress) -> dict:
    from .pipelines.evaluate import evaluate_model

    return evaluate_model(args.model, Path(args.data), Path(args.out),  # resolves MODEL after checking --out
                          subjects=args.subjects, split_file=args.split, device=args.device,
                          baseline=not args.no_baseline, progress=progress)


def cmd_export(args: argparse.Namespace, progress: Progress) -> dict:
    from .pipelines.export import export_run

    try:
        card = json.loads(Path(args.card).read_text(encoding="utf-8")) if args.card else None
    except (OSError, ValueError) as error:
        raise InputError(f"{args.card}: not a readable JSON model card ({error}); fix the file or leave out --card.")
    path = export_run(args.run, args.bundle, name=args.name, version=args.version, which=args.checkpoint,
                      half=args.half, baseline=not args.no_baseline, progress=progress, card=card,
                      flip_average=args.flip_average)
    progress.log(f"bundle written to {path}")
    return {"bundle": str(path)}


def cmd_models(args: argparse.Namespace, progress: Progress) -> dict:
    from .pipelines.models import show_models

    return show_models(args.json, progress)


def cmd_data_ixi(args: argparse.Namespace, progress: Progress) -> dict:
    from .data.ixi import fetch_ixi

    folder = fetch_ixi(Path(args.out), base_url=args.base_url, on_progress=progress.callback("download"))
    progress.log(f"IXI is in {folder}; next: mrimpute preprocess {Path(args.out) / 'raw'} PREPROCESSED --reference PD")
    return {"out": str(folder)}


def _named_paths(items: Sequence[str] | None, option: str) -> dict[str, Path]:
    result: dict[str, Path] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"{option} {item!r}: write it as NAME=PATH, e.g. {option} T1=t1.nii.gz")
        if name in result:
            raise InputError(f"{option}: {name} is given twice ({result[name]} and {path}).")
        result[name] = Path(path)
    return result


def cmd_impute(args: argparse.Namespace, progress: Progress) -> dict:
    from .pipelines.impute import ImputeOptions, impute

    options = ImputeOptions(device=args.device, precision=args.precision, batch_size=args.batch_size,
                            n4=False if args.no_n4 else None, register=not args.no_register,
                            uncertainty=args.uncertainty, seed=args.seed, self_check=args.self_check,
                            write_registered=args.write_registered)
    report = impute(args.model, _named_paths(args.input, "--input"),  # resolves --model after checking --out
                    Path(args.out), options, progress, references=_named_paths(args.reference, "--reference"),
                    replace=args.replace)
    return {"out": str(args.out), "synthesized": report["synthesized"], "files": report["files"],
            "timings": report["timings"], "self_check": report.get("self_check"),
            "comparison": report.get("comparison")}


def cmd_compare(args: argparse.Namespace, progress: Progress) -> dict:
    from .pipelines.compare import compare_files

    return compare_files(Path(args.synthetic), Path(args.real), Path(args.out), args.mask, args.same_units, progress)


def cmd_demo(args: argparse.Namespace, progress: Progress) -> dict:
    from .pipelines.demo import run_demo

    return run_demo(Path(args.out), progress, data=Path(args.data) if args.data else None, hide=args.hide)


def _add_phantom_command(commands) -> None:
    """`mrimpute phantom`: synthetic subjects with known truth."""
    p = commands.add_parser("phantom", help="write synthetic subjects with known truth")
    p.add_argument("out", help="output folder")
    p.add_argument("--subjects", type=positive_int, default=2)
    p.add_argument("--contrasts", "--modalities", dest="contrasts", type=_comma_list, default=("T1", "T2", "PD"),
                   help="contrasts, from T1, T2, PD, FLAIR, T1c (default T1,T2,PD)")
    p.add_argument("--shape", type=_shape, default=(64, 64, 48), help="x,y,z voxels at 1 mm (default 64,64,48)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--misalignment", choices=("none", "rigid", "affine"), default="rigid")
    p.add_argument("--no-lesion", action="store_true")
    p.add_argument("--bias", type=non_negative_float, default=0.2, help="bias field strength (0.2 = up to about ±20%%)")
    p.add_argument("--noise", type=non_negative_float, default=0.02, help="Rician noise, as a fraction of white matter")
    _add_progress(p)
    p.set_defaults(handler=cmd_phantom)


def _add_preprocess_command(commands) -> None:
    """`mrimpute preprocess`: a raw folder of subjects into a preprocessed one."""
    p = commands.add_parser("preprocess", help="registration, N4, brain mask, normalization, QC, manifest")
    p.add_argument("input", help="folder of subjects (IXI, BraTS, BrainLesion or one folder per subject)")
    p.add_argument("out", help="output folder")
    p.add_argument("--reference", help="contrast whose grid all are registered into (default: the finest grid)")
    p.add_argument("--contrasts", "--modalities", dest="contrasts", type=_comma_list, default=None,
                   help="only these contrasts")
    p.add_argument("--registration", choices=("rigid", "affine"), default="rigid")
    p.add_argument("--no-register", action="store_true", help="inputs are already co-registered")
    p.add_argument("--no-n4", action="store_true", help="skip N4 bias-field correction")
    p.add_argument("--no-qc", action="store_true", help="skip the QC pictures")
    p.add_argument("--jobs", type=positive_int, default=1, help="subjects processed in parallel")
    _add_progress(p)
    p.set_defaults(handler=cmd_preprocess)


def _add_train_command(commands) -> None:
    """`mrimpute train`: its options are add_train_arguments's."""
    p = commands.add_parser("train", help="MM-GAN training with curriculum; runs unchanged under torchrun; then, "
                                          "if asked, evaluation, a model bundle and its installation")
    add_train_arguments(p)
    p.set_defaults(handler=cmd_train)


def _add_evaluate_command(commands) -> None:
    """`mrimpute evaluate`: metrics of a model on preprocessed subjects."""
    p = commands.add_parser("evaluate", help="per-scenario, per-subject metrics with the linear baseline beside")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("data", help="a preprocessed folder, or raw subjects (preprocessed into OUT first)")
    p.add_argument("--out", required=True, help="folder for results.md/.csv/.json and plots")
    p.add_argument("--subjects", type=_comma_list, help="comma-separated subject names to evaluate")
    p.add_argument("--split", type=Path, help="a split.json whose test subjects are evaluated")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--no-baseline", action="store_true", help="leave out the linear-regression baseline")
    _add_progress(p)
    p.set_defaults(handler=cmd_evaluate)


def _add_export_command(commands) -> None:
    """`mrimpute export`: a model bundle from a training run."""
    p = commands.add_parser("export", help="a model bundle from a training run")
    p.add_argument("run")
    p.add_argument("bundle", help="output folder, or a path ending in .zip")
    p.add_argument("--name")
    p.add_argument("--version", default="0.1.0")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--half", action="store_true", help="weights stored as float16 (half the size; loaded as float32)")
    p.add_argument("--no-baseline", action="store_true", help="leave out the linear baseline of the training split")
    p.add_argument("--card", type=Path, help="a JSON model card: description, intended_use, license, metrics")
    p.add_argument("--flip-average", action="store_true", help="the bundle imputes with test-time left-right flips")
    _add_progress(p)
    p.set_defaults(handler=cmd_export)


def _add_models_command(commands) -> None:
    """`mrimpute models`: the built-in and installed models."""
    p = commands.add_parser("models", help="list the built-in and installed models (name, version, contrasts, path)")
    p.add_argument("--json", action="store_true", help="print one JSON document (for machines) instead of a table")
    _add_progress(p)
    p.set_defaults(handler=cmd_models)


def _add_data_command(commands) -> None:
    """`mrimpute data SOURCE`: downloads of public data sets."""
    p = commands.add_parser("data", help="download public data sets")
    sources = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    q = sources.add_parser("ixi", help="the IXI T1, T2 and PD tarballs (resumable), extracted, with a split")
    q.add_argument("out")
    q.add_argument("--base-url", help="a mirror holding IXI-T1.tar, IXI-T2.tar, IXI-PD.tar")
    _add_progress(q)
    q.set_defaults(handler=cmd_data_ixi)


def _add_impute_command(commands) -> None:
    """`mrimpute impute`: missing contrasts of one subject from the given ones."""
    p = commands.add_parser("impute", help="the main job: missing contrasts from the given ones")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--input", action="append", metavar="NAME=PATH", required=True,
                   help="a given contrast, e.g. --input T1=t1.nii.gz (repeat for each)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"), default="fp32",
                   help="fp32 (default, exact), or reduced precision where the hardware supports it")
    p.add_argument("--batch-size", type=positive_int, default=16, help="slices per forward pass")
    p.add_argument("--no-n4", action="store_true", help="skip N4 even if the model was trained with it")
    p.add_argument("--no-register", action="store_true", help="inputs are already co-registered")
    p.add_argument("--uncertainty", type=non_negative_int, default=0, metavar="K",
                   help="K stochastic passes (dropout on): writes <C>_uncertainty.nii.gz, the per-voxel std")
    p.add_argument("--seed", type=int, default=0, help="seed of the stochastic passes")
    p.add_argument("--self-check", action="store_true",
                   help="hide each given contrast in turn and report how well the model recovers it")
    p.add_argument("--reference", action="append", metavar="NAME=PATH",
                   help="a real volume of a synthesized contrast: writes an error map and metrics")
    p.add_argument("--write-registered", action="store_true", help="also write the given contrasts as registered")
    p.add_argument("--replace", action="store_true", help="--out may hold an earlier imputation: replace it whole")
    _add_progress(p)
    p.set_defaults(handler=cmd_impute)


def _add_compare_command(commands) -> None:
    """`mrimpute compare`: error map and metrics of a synthetic volume against a real one."""
    p = commands.add_parser("compare", help="error map and metrics of a synthetic volume against a real one")
    p.add_argument("synthetic")
    p.add_argument("real")
    p.add_argument("--out", required=True)
    p.add_argument("--mask", help="brain mask on the real volume's grid (default: estimated from it)")
    p.add_argument("--same-units", action="store_true",
                   help="the synthetic volume is already in the real one's units (default: model units, x1000)")
    _add_progress(p)
    p.set_defaults(handler=cmd_compare)


def _add_demo_command(commands) -> None:
    """`mrimpute demo`: the whole path on the built-in phantom."""
    p = commands.add_parser("demo", help="the whole path on the built-in phantom, no download needed")
    p.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    p.add_argument("--data", help="a folder of real subjects to use instead of the phantom (e.g. ../shared/data/real)")
    p.add_argument("--hide", help="the contrast to hide and impute (default PD, else FLAIR)")
    _add_progress(p)
    p.set_defaults(handler=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `mrimpute`: one subcommand per pipeline, in the order `--help` lists them."""
    parser = argparse.ArgumentParser(prog="mrimpute", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"MRImputationLib {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (_add_phantom_command, _add_preprocess_command, _add_train_command, _add_evaluate_command,
                        _add_export_command, _add_models_command, _add_data_command, _add_impute_command,
                        _add_compare_command, _add_demo_command):
        add_command(commands)
    return parser


def run(handler: Callable[[argparse.Namespace, Progress], dict], args: argparse.Namespace) -> int:
    """Run one command with the contract's progress, signals and exit codes."""
    mode = args.progress or ("bar" if sys.stderr.isatty() else "none")
    progress = Progress(mode)
    try:
        with cancel_on_signals():
            info = handler(args, progress) or {}
    except InputError as error:
        progress.error(str(error), EXIT_BAD_INPUT)
        return EXIT_BAD_INPUT
    except (Cancelled, KeyboardInterrupt):
        progress.error("cancelled; no partial output was kept", EXIT_CANCELLED)
        return EXIT_CANCELLED
    except Exception as error:  # noqa: BLE001 - the contract promises an error event, not a traceback
        import traceback

        if mode != "json":
            traceback.print_exc()
        progress.error(f"{type(error).__name__}: {error}", EXIT_FAILED)
        return EXIT_FAILED
    progress.done(**info)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.handler, args)


if __name__ == "__main__":
    raise SystemExit(main())
