"""Headless MM-GAN training: `mrimpute train` → evaluate on the run's test subjects → export (→ install) a model bundle.

Inside Slicer (its Python, with PyTorch from the PyTorch extension):
    Slicer --no-main-window --python-script MRImputationTraining/train.py -- DATA --out RUN [options]
With any Python that has MRImputationLib (pip install -e . in the repository):
    python MRImputationTraining/train.py -- DATA --out RUN [options]

This file only finds the library and runs `mrimpute train` (MRImputationLib.cli) with the script's
defaults in front of the given options, so any option given wins: --evaluate and --export (the
script evaluates and exports unless told --no-evaluate / --no-export), --progress json unless
stdout and stderr are terminals (a log collector reads one JSON event per line; inside Slicer they
never are, so give --progress bar or none to choose: a --progress given is the only one), and inside Slicer
--models-folder ~/.mrimputation/models (or $MRIMPUTATION_MODELS), where MR Imputation lists models,
for --install, after moving there the models an earlier version kept in Slicer's cache folder.
The options are `mrimpute train`'s (see --help); exit codes: 0 done, 1 failed, 2 bad input (the
message says what to fix), 130 cancelled (continue with --resume).
"""

import sys
from pathlib import Path


def _find_library() -> None:
    """Put the MRImputationLib shipped with this script first on the path (source tree or installed extension)."""
    here = Path(__file__).resolve().parent
    for folder in (here.parent / "MRImputation", here.parent):
        if (folder / "MRImputationLib" / "__init__.py").is_file():
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            return


def split_script_arguments(argv) -> list:
    """The script's own arguments: Slicer may pass the `--` that separates them from its own.

    >>> split_script_arguments(["--", "data", "--out", "run"])
    ['data', '--out', 'run']
    """
    argv = list(argv)
    return argv[1:] if argv[:1] == ["--"] else argv


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)  # Slicer's redirected streams may not have it
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False


def _slicer_models_folder() -> list:
    """Inside Slicer, `--models-folder` of the models MR Imputation lists (slicer is loaded only there),
    once the models an earlier version kept in Slicer's cache folder are moved there."""
    app = getattr(sys.modules.get("slicer"), "app", None)
    if app is None:
        return []
    from MRImputationLib.models.store import user_store

    def log(message: str) -> None:
        print(message, file=sys.stderr)  # stdout may carry the JSON events

    return ["--models-folder", str(user_store(cache_path=app.cachePath, on_log=log).folder)]


def _gives(arguments: list, option: str) -> bool:
    """Whether `option` is among the given arguments (as `--option VALUE` or `--option=VALUE`)."""
    return any(a == option or a.startswith(option + "=") for a in arguments)


def command_line(argv) -> list:
    """The arguments of `mrimpute` for the script's own: the script's defaults first, then what was given.

    A `--progress` the user gives is the only one: the default (JSON lines unless stdout and stderr are
    terminals; inside Slicer they never are, PythonQt redirects them) is added only without it.
    """
    _find_library()
    given = split_script_arguments(argv)
    defaults = ["--evaluate", "--export"]
    if not _gives(given, "--progress") and not (_is_terminal(sys.stdout) and _is_terminal(sys.stderr)):
        defaults += ["--progress", "json"]
    return ["train", *defaults, *_slicer_models_folder(), *given]


def usage() -> str:
    """What --help prints before `mrimpute train`'s options: this script's own path (in an installed
    extension it is deep inside Slicer's folder) and how to call it."""
    here = Path(__file__).resolve()
    return (f"MR Imputation headless training: {here}\n"
            f"  Slicer --no-main-window --python-script \"{here}\" -- DATA --out RUN [options]\n"
            f"  python \"{here}\" -- DATA --out RUN [options]      (a Python that has MRImputationLib)\n"
            "Runs `mrimpute train --evaluate --export` with the options below (--no-evaluate, --no-export turn "
            "those off). Progress: JSON lines unless stdout and stderr are terminals (inside Slicer they never "
            "are); give --progress bar or --progress none to choose.\n")


def main(argv=None) -> int:
    _find_library()
    from MRImputationLib.cli import main as mrimpute

    arguments = split_script_arguments(sys.argv[1:] if argv is None else argv)
    if _gives(arguments, "--help") or _gives(arguments, "-h"):
        print(usage())
        return mrimpute(["train", "--help"])  # argparse prints the options and exits
    return mrimpute(command_line(arguments))


if __name__ == "__main__":
    raise SystemExit(main())
