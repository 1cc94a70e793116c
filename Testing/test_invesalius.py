"""Reading an InVesalius project (.inv3): the format of the one real head CT available here."""

from __future__ import annotations

import io
import plistlib
import tarfile
from pathlib import Path

import numpy as np
import pytest

from MRImputationLib.core.errors import InputError
from MRImputationLib.data.invesalius import read_inv3


def _project(path: Path, voxels: np.ndarray, orientation: int, spacing=(0.5, 0.5, 2.0), shape=None) -> Path:
    """A minimal .inv3 as InVesalius writes it: a gzipped tar of main.plist and the raw matrix."""
    main = {"modality": "CT", "orientation": orientation, "spacing": list(spacing),
            "matrix": {"dtype": str(voxels.dtype), "filename": "matrix.dat", "shape": list(shape or voxels.shape)}}
    with tarfile.open(path, "w:gz") as archive:
        for name, data in (("project/main.plist", plistlib.dumps(main)), ("project/matrix.dat", voxels.tobytes())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_a_coronal_project_reads_as_a_volume_in_lps(tmp_path):
    voxels = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5) - 1024
    volume = read_inv3(_project(tmp_path / "head.inv3", voxels, orientation=1))
    assert volume.contrast == "CT" and volume.array.dtype == np.float32 and volume.shape == (3, 4, 5)
    assert np.array_equal(volume.array, voxels) and volume.spacing == (0.5, 0.5, 2.0)
    # columns -> left (+x), rows -> inferior (-z), slices -> posterior (+y)
    assert np.allclose(volume.index_to_physical((1, 0, 0)), [0.5, 0, 0])
    assert np.allclose(volume.index_to_physical((0, 1, 0)), [0, 0, -0.5])
    assert np.allclose(volume.index_to_physical((0, 0, 1)), [0, 2.0, 0])


def test_a_damaged_or_foreign_file_is_refused_by_name(tmp_path):
    (tmp_path / "text.inv3").write_text("not a project")
    with pytest.raises(InputError, match="text.inv3: not a readable InVesalius project"):
        read_inv3(tmp_path / "text.inv3")
    short = _project(tmp_path / "short.inv3", np.zeros((2, 2, 2), np.int16), 0, shape=(2, 2, 3))
    with pytest.raises(InputError, match="holds 8 voxels"):
        read_inv3(short)
    with pytest.raises(InputError, match="orientation 7"):
        read_inv3(_project(tmp_path / "odd.inv3", np.zeros((2, 2, 2), np.int16), 7))
