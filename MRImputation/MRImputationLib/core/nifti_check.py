"""What ITK's NIfTI reader does not check, checked from the file's own bytes before it is read.

SimpleITK reads a `.nii.gz` cut short (a copy or download that stopped half-way) or a `.nii`
missing its tail without a word: the missing slices come back as zeros. It also reads NaN and
infinite voxels as 0. Both would go on to be imputed, preprocessed or scored as if they were
anatomy. `check_nifti_file` streams the file once (1 MiB at a time, never all of it in memory):
the gzip stream must be complete (its end marker and CRC read), the voxel data must cover what
the header describes (header + voxels), and a floating-point image must hold only finite values.
Files that are not NIfTI-1/2 single files (`n+1`, `n+2`), or not gzip where the name says so, are
left to the reader, which refuses them with its own reason.

>>> import tempfile, pathlib, numpy as np, SimpleITK as sitk
>>> path = pathlib.Path(tempfile.mkdtemp()) / "a.nii"
>>> sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 4, 4), np.float32)), str(path))
>>> check_nifti_file(path)
>>> path.write_bytes(path.read_bytes()[:-100]) and None
>>> check_nifti_file(path)
Traceback (most recent call last):
...
MRImputationLib.core.errors.InputError: ...a.nii: the file is cut short: ...
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

CHUNK = 1 << 20
# NIfTI datatype code -> numpy kind of the floating-point types whose voxels can be NaN or infinite.
FLOAT_TYPES = {16: "f4", 64: "f8"}


@dataclass(frozen=True)
class NiftiHeader:
    """The fields of a NIfTI-1/2 header that say how much voxel data follows, and of which type."""

    endian: str  # "<" or ">"
    datatype: int
    bitpix: int
    shape: tuple[int, ...]
    vox_offset: int

    @property
    def voxels(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 0

    @property
    def data_bytes(self) -> int:
        return self.voxels * self.bitpix // 8


def parse_header(head: bytes) -> NiftiHeader | None:
    """The header of a single-file NIfTI-1 (`n+1`) or NIfTI-2 (`n+2`), or None when `head` is not one."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348 and head[344:347] == b"n+1":
            dims = struct.unpack(endian + "8h", head[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", head[70:74])
            offset = struct.unpack(endian + "f", head[108:112])[0]
            return _header(endian, datatype, bitpix, dims, offset, 352)
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540 and head[4:7] == b"n+2":
            datatype, bitpix = struct.unpack(endian + "2h", head[12:16])
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = struct.unpack(endian + "q", head[168:176])[0]
            return _header(endian, datatype, bitpix, dims, offset, 544)
    return None


def _header(endian: str, datatype: int, bitpix: int, dims, offset: float, minimum_offset: int) -> NiftiHeader | None:
    rank = dims[0]
    if not 1 <= rank <= 7 or bitpix <= 0 or bitpix % 8 or any(d < 1 for d in dims[1:rank + 1]):
        return None  # not a header this check understands: the reader decides
    offset = int(offset) if offset == offset and offset >= minimum_offset else minimum_offset
    return NiftiHeader(endian, int(datatype), int(bitpix), tuple(int(d) for d in dims[1:rank + 1]), offset)


def _chunks(path: Path):
    """The file's (uncompressed) bytes, 1 MiB at a time; InputError when a gzip stream is damaged or cut short."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as handle:
            yield from iter(lambda: handle.read(CHUNK), b"")
    except EOFError:
        raise InputError(f"{path}: the file is cut short (its gzip stream ends before its end marker): it was not "
                         "copied or downloaded completely. Copy it again from the original.") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise InputError(f"{path}: the compressed data is damaged ({error}); copy the file again from the "
                         "original.") from None


class _Scan:
    """Running totals over the voxel data: bytes seen and non-finite voxels counted."""

    def __init__(self, header: NiftiHeader) -> None:
        self.header, self.total, self.non_finite = header, 0, 0
        kind = FLOAT_TYPES.get(header.datatype)
        self.dtype = np.dtype(header.endian + kind) if kind else None
        self.pending = b""  # bytes of a voxel split between two chunks

    def add(self, chunk: bytes) -> None:
        start = self.total
        self.total += len(chunk)
        if self.dtype is None:
            return
        begin = max(self.header.vox_offset - start, 0)
        end = min(self.header.vox_offset + self.header.data_bytes - start, len(chunk))
        if end <= begin:
            return
        data = self.pending + chunk[begin:end]
        usable = len(data) - len(data) % self.dtype.itemsize
        values = np.frombuffer(data[:usable], dtype=self.dtype)
        self.non_finite += int(values.size - np.count_nonzero(np.isfinite(values)))
        self.pending = data[usable:]


def check_nifti_file(path: str | Path) -> None:
    """InputError naming `path` when it is cut short, its gzip stream is damaged, or it holds NaN/inf voxels."""
    path = Path(path)
    chunks = _chunks(path)
    first = b""
    for chunk in chunks:  # enough bytes for either header
        first += chunk
        if len(first) >= 544:
            break
    header = parse_header(first)
    if header is None:
        chunks.close()
        return
    scan = _Scan(header)
    scan.add(first)
    for chunk in chunks:
        scan.add(chunk)
    needed = header.vox_offset + header.data_bytes
    if scan.total < needed:
        held = max(scan.total - header.vox_offset, 0)
        raise InputError(
            f"{path}: the file is cut short: its header describes {'x'.join(map(str, header.shape))} voxels "
            f"({needed} bytes with the header) but it holds {scan.total} bytes, {held / max(header.data_bytes, 1):.0%} "
            "of the voxels. It was not copied or saved completely; copy or export it again.")
    if scan.non_finite:
        if scan.non_finite == header.voxels:
            raise InputError(f"{path}: all {header.voxels} voxels are NaN or infinite (no finite value); the file "
                             "is damaged. Export it again.")
        raise InputError(f"{path}: contains {scan.non_finite} NaN or infinite voxels (of {header.voxels}); replace "
                         "them (e.g. by 0) and retry.")
