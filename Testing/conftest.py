"""Shared fixtures: paths to the real cases and small phantom subjects."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "MRImputation"))  # the Lib also works uninstalled, as inside Slicer

REAL_DATA = REPO.parent / "shared" / "data" / "real"
LPS_CASE = REAL_DATA / "BraTS-GLI-00001-000"
RAS_CASE = REAL_DATA / "BraTS-MET-00110-000"
BRAINLESION_CASE = REAL_DATA / "TCGA-DU-7294"


def real_case(case: Path) -> Path:
    if not case.is_dir():
        pytest.skip(f"shared real case {case} is not present")
    return case


@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory) -> Path:
    """Two small misaligned phantom subjects (T1, T2, PD) written once per test session."""
    from MRImputationLib.phantom import PhantomConfig, write_phantom

    out = tmp_path_factory.mktemp("phantom")
    write_phantom(out, 2, PhantomConfig(shape=(64, 64, 40), misalignment="rigid"), seed=7)
    return out
