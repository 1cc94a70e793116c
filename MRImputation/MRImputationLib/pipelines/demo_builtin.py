"""The demo's last step: the extension's built-in model(s) (Resources/Models) on one held-out subject.

Each built-in model imputes one contrast of a subject that has all of the model's contrasts,
compared with the real one. On the phantom, when the demo's phantom lacks one of the model's
contrasts (a T1, T1c, FLAIR model beside a T1, T2, PD phantom), one phantom subject with the
model's contrasts is made for it (adult-sized head, coarse voxels: quick). With `--data`, the last
subject having all of them is used, or the model is skipped with the reason. Nothing is downloaded.

>>> choose_hidden(["T1", "T1c", "FLAIR"], "T1", None, ["110", "101", "011"])
'FLAIR'
>>> choose_hidden(["T1", "T1c", "FLAIR"], "T1", "T1c", None)
'T1c'
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..core.progress import Progress

# A 240 x 240 x 155 mm field of view (an adult head, as models are trained on) at 2.5 mm voxels.
PHANTOM_SHAPE = (96, 96, 62)
PHANTOM_SPACING = (2.5, 2.5, 2.5)


def choose_hidden(contrasts: Sequence[str], reference: str, asked: str | None,
                  scenarios: Sequence[str] | None) -> str | None:
    """The contrast to hide: `asked` when the model has it, else the last non-reference one; only
    contrasts whose "all but this one given" scenario the model was trained for. None if there is none."""
    def trained(name: str) -> bool:
        bits = "".join("0" if c == name else "1" for c in contrasts)
        return not scenarios or bits in scenarios

    order = ([asked] if asked in contrasts else []) + [c for c in reversed(contrasts) if c != reference] + [reference]
    return next((c for c in order if trained(c)), None)


def builtin_demo(out: Path, subjects: list, on_phantom: bool, progress: Progress, hide: str | None = None,
                 builtin: Path | None = None) -> tuple[list[str], list[dict]]:
    """Every built-in model on one subject: (summary sections, results); ([], []) when none is built in."""
    from ..models.store import BUILTIN_MODELS, ModelStore

    cards = ModelStore(builtin=builtin or BUILTIN_MODELS).builtin()
    sections, results = [], []
    for card in cards:
        subject = _subject_for(card, out, subjects, on_phantom, progress)
        hidden = choose_hidden(card.contrasts, card.reference, hide, card.scenarios)
        if subject is None or hidden is None:
            continue
        result = _impute_with(card, subject, hidden, out / "builtin" / card.id / subject.subject, progress)
        results.append(result)
        m = result["metrics"]
        sections.append(
            f"## Built-in model {card.name} {card.version}: {hidden} of {subject.subject}, synthesized from "
            f"{', '.join(result['given'])}\n\n| PSNR (dB) | SSIM | MAE |\n|---|---|---|\n"
            f"| {m['psnr']:.2f} | {m['ssim']:.4f} | {m['mae']:.4f} |"
            + ("\n\nOn a phantom, unlike the real scans the model was trained on: the numbers show the path "
               "works, not how good the model is." if on_phantom else ""))
    return sections, results


def _subject_for(card, out: Path, subjects: list, on_phantom: bool, progress: Progress):
    """The last subject with all of the model's contrasts; on the phantom one is made when none has them."""
    having = [s for s in subjects if set(card.contrasts) <= set(s.files)]
    if having:
        return having[-1]
    if not on_phantom:
        progress.log(f"built-in model {card.name}: skipped, no subject in the data has all of "
                     f"{', '.join(card.contrasts)}")
        return None
    from ..data.discovery import discover_subjects
    from ..data.phantom import PhantomConfig, write_phantom

    folder = out / "builtin" / f"phantom-{'-'.join(card.contrasts)}"
    if not folder.exists():
        progress.log(f"[built-in] a phantom subject with {', '.join(card.contrasts)} for the built-in model -> {folder}")
        config = PhantomConfig(shape=PHANTOM_SHAPE, spacing=PHANTOM_SPACING, contrasts=tuple(card.contrasts),
                               misalignment="rigid")
        write_phantom(folder, 1, config, seed=2027, on_progress=progress.callback("phantom"))
    return discover_subjects(folder)[-1]


def _impute_with(card, subject, hidden: str, out: Path, progress: Progress) -> dict:
    from .impute import ImputeOptions, impute

    given = {c: subject.files[c] for c in card.contrasts if c != hidden}
    progress.log(f"[built-in] built-in model {card.name} {card.version}: hiding {hidden} of {subject.subject}, "
                 f"imputing it from {', '.join(given)}")
    report = impute(card.path, given, out, ImputeOptions(device="auto"), progress=progress,
                    references={hidden: subject.files[hidden]}, replace=True)
    return {"model": card.name, "version": card.version, "subject": subject.subject, "hidden": hidden,
            "given": list(given), "metrics": report["comparison"][hidden], "out": str(out)}
