"""Headless MM-GAN training: train → evaluate on the run's test subjects → export (→ install) a model bundle.

Inside Slicer (its Python, with PyTorch from the PyTorch extension):
    Slicer --no-main-window --python-script MRImputationTraining/train.py -- DATA --out RUN [options]
With any Python that has MRImputationLib (pip install -e . in the repository):
    python MRImputationTraining/train.py -- DATA --out RUN [options]

The options are those of `mrimpute train` (--config, --epochs, --resume, ...; see --help) plus
--no-evaluate, --no-export, --bundle PATH and --install [MODELS_FOLDER]. Progress goes to stdout as
one JSON object per line unless stdout is a terminal (`--progress bar|json|none` chooses); exit codes:
0 done, 1 failed, 2 bad input (the message says what to fix), 130 cancelled (continue with --resume).
Everything is in MRImputationLib.pipelines.headless_training; this file only finds the library and calls it.
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


def build_parser():
    """The script's argument parser (mrimpute train's options, defined once in the library)."""
    _find_library()
    from MRImputationLib.pipelines.headless_training import build_parser as library_parser

    return library_parser()


def main(argv=None) -> int:
    _find_library()
    from MRImputationLib.pipelines.headless_training import main as library_main

    return library_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
