"""Reading an InVesalius project (`.inv3`): the one real head CT these machines have.

Debian's `invesalius-examples` package (GPL-2, InVesalius by CTI Renato Archer) ships
`Cranium.inv3`: a gzipped tar holding `main.plist` (modality, spacing, orientation, the matrix's
dtype and shape) and `matrix.dat`, the raw voxels in Hounsfield units, stacked along the
acquisition axis. `read_inv3` returns it as a `Volume` in LPS: columns -> patient left, rows ->
inferior, and the stack axis -> superior (axial), posterior (coronal) or left (sagittal), the
conventions InVesalius's orientation codes 0, 1, 2 follow. There is no paired MRI of this patient:
it can show an unpaired MRI -> CT translation, not score one.

    apt-get download invesalius-examples && dpkg-deb -x invesalius-examples_*.deb inv
    read_inv3("inv/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
"""

from __future__ import annotations

import plistlib
import tarfile
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.volume import Volume

# Stack axis per orientation code, as (x, y, z) direction columns in LPS: columns -> left, rows -> the
# in-plane vertical (posterior for axial slices, inferior otherwise), slices -> the acquisition axis.
DIRECTIONS = {
    0: ((1, 0, 0), (0, 1, 0), (0, 0, 1)),  # axial: rows -> posterior, slices -> superior
    1: ((1, 0, 0), (0, 0, -1), (0, 1, 0)),  # coronal: rows -> inferior, slices -> posterior
    2: ((0, 1, 0), (0, 0, -1), (1, 0, 0)),  # sagittal: columns -> posterior, rows -> inferior, slices -> left
}
DTYPES = {"int16": np.int16, "uint16": np.uint16, "float32": np.float32, "uint8": np.uint8}


def read_inv3(path: str | Path, contrast: str = "CT") -> Volume:
    """The image of an InVesalius project as a float32 Volume (InputError naming the file on anything else)."""
    path = Path(path)
    try:
        with tarfile.open(path, "r:*") as archive:
            members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
            main = plistlib.loads(archive.extractfile(members["main.plist"]).read())
            matrix = main["matrix"]
            raw = archive.extractfile(members[matrix["filename"]]).read()
    except (OSError, tarfile.TarError, KeyError, plistlib.InvalidFileException) as error:
        raise InputError(f"{path}: not a readable InVesalius project (.inv3): {error}.") from None
    shape = tuple(int(n) for n in matrix["shape"])
    dtype = DTYPES.get(matrix.get("dtype"))
    orientation = int(main.get("orientation", 0))
    if dtype is None or len(shape) != 3 or orientation not in DIRECTIONS:
        raise InputError(f"{path}: matrix {matrix.get('dtype')} {shape}, orientation {orientation}: not a 3-D image "
                         "this reader knows.")
    voxels = np.frombuffer(raw, dtype=dtype)
    if voxels.size != int(np.prod(shape)):
        raise InputError(f"{path}: {matrix['filename']} holds {voxels.size} voxels, the project says {shape}.")
    columns = np.asarray(DIRECTIONS[orientation], float).T  # direction matrix: axis directions as columns
    spacing = tuple(float(s) for s in main["spacing"])
    return Volume(voxels.reshape(shape).astype(np.float32), spacing=spacing, direction=tuple(columns.ravel()),
                  contrast=contrast, source=str(path))
