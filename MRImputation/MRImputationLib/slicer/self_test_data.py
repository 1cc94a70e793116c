"""Inputs for the Slicer self-test and quick checks: phantom volumes and an untrained tiny bundle.

The bundle has random weights: it exercises every path (child process, progress, outputs, error
map) in seconds, and its outputs mean nothing. Real models come from training or the catalogue.
"""

from __future__ import annotations

from pathlib import Path

from ..core.volume import Volume

SELF_TEST_MODEL = "self-test-untrained"


def untrained_bundle(folder: str | Path, contrasts: tuple[str, ...] = ("T1", "T2", "PD"),
                     reference: str = "PD") -> Path:
    """Write a `tiny` MM-GAN bundle with freshly initialised weights into `folder`."""
    import torch

    from ..core.contrasts import ContrastSet
    from ..models.bundle import BundleInfo, write_bundle
    from ..models.mmgan.config import preset
    from ..models.mmgan.networks import build_generator

    torch.manual_seed(0)
    config = preset("tiny", len(contrasts))
    generator = build_generator(config)
    info = BundleInfo(
        name=SELF_TEST_MODEL, version="0.0.1", contrasts=list(contrasts), reference=reference,
        normalization={"method": "percentile", "lower_percentile": 0.5, "upper_percentile": 99.5},
        preprocessing={"n4": False, "registration": "rigid",
                       "slicing": {"size": config.image_size, "crop": "brain", "skip_empty": True, "margin_mm": 8.0}},
        model=config.to_dict(),
        training={"software": "untrained (self-test)"},
        scenarios=[s.bits for s in ContrastSet(tuple(contrasts), reference).scenarios()],
        intended_use="Self-test only: untrained weights, the outputs mean nothing.",
        license="Apache-2.0",
        description="A tiny untrained network for checking the extension's plumbing.",
    )
    return write_bundle(folder, info, {"generator": generator.state_dict()})


def phantom_volumes(shape: tuple[int, int, int] = (48, 48, 32), seed: int = 5,
                    contrasts: tuple[str, ...] = ("T1", "T2", "PD")) -> dict[str, Volume]:
    """One aligned phantom subject's contrasts (bias and noise included), by contrast name."""
    from ..data.phantom import PhantomConfig, make_subject

    subject = make_subject(PhantomConfig(shape=shape, contrasts=contrasts, misalignment="none", bias_strength=0.05),
                           seed=seed, name="self-test")
    return dict(subject.observed)
