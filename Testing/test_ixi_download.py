"""IXI download: resumable, verified downloads and safe extraction, against a local HTTP server only."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from MRImputationLib.core.errors import InputError
from MRImputationLib.core.download import DownloadError, DownloadMismatch, download
from MRImputationLib.data.ixi import extract_tar, fetch_ixi
from MRImputationLib.data.splits import Split

SUBJECTS = {  # subject -> contrasts it has; IXI014 lacks PD
    "IXI002-Guys-0828": ("T1", "T2", "PD"),
    "IXI012-HH-1211": ("T1", "T2", "PD"),
    "IXI013-HH-1212": ("T1", "T2", "PD"),
    "IXI014-HH-1236": ("T1", "T2"),
}


class Files(BaseHTTPRequestHandler):
    """Serves `files` (path -> bytes), honouring `Range: bytes=N-` unless the path starts with /norange/."""

    files: dict[str, bytes] = {}
    requests: list[tuple[str, str | None]] = []
    drop_after: int | None = None  # the next response stops after this many bytes (a dropped connection)

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.requests.append((self.path, self.headers.get("Range")))
        data = self.files.get(self.path.replace("/norange", "", 1))
        if data is None:
            self.send_error(404, "Not Found")
            return
        start, status = 0, 200
        wanted = self.headers.get("Range")
        if wanted and not self.path.startswith("/norange/"):
            start = int(wanted.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if Files.drop_after is not None:
            self.wfile.write(data[start:start + Files.drop_after])
            Files.drop_after = None
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    Files.files, Files.requests, Files.drop_after = {}, [], None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _nifti_bytes(seed: int, folder: Path) -> bytes:
    import SimpleITK as sitk

    array = np.random.default_rng(seed).random((6, 7, 8)).astype(np.float32)
    path = folder / f"{seed}.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path.read_bytes()


def _tar(members: dict[str, bytes], extra=()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in extra:
            archive.addfile(info)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def ixi_tars(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("nifti")
    tars = {}
    for k, contrast in enumerate(("T1", "T2", "PD")):
        members = {f"{s}-{contrast}.nii.gz": _nifti_bytes(10 * k + i, folder)
                   for i, (s, cs) in enumerate(SUBJECTS.items()) if contrast in cs}
        tars[f"/IXI-{contrast}.tar"] = _tar(members)
    return tars


def test_downloads_a_whole_file_and_reports_progress(server, tmp_path):
    data = bytes(range(256)) * 4000
    Files.files = {"/a.bin": data}
    seen = []
    target = download(f"{server}/a.bin", tmp_path / "a.bin", expected_size=len(data),
                      sha256=hashlib.sha256(data).hexdigest(), on_progress=lambda f, m: seen.append(f), chunk=1 << 14)
    assert target.read_bytes() == data and not (tmp_path / "a.bin.part").exists()
    assert seen[-1] == 1.0 and len(seen) >= 2
    download(f"{server}/a.bin", target, expected_size=len(data))  # present and right: no request
    assert len(Files.requests) == 1


def test_resumes_a_partial_download_with_a_range_request(server, tmp_path):
    data = bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8))
    Files.files = {"/a.tar": data}
    (tmp_path / "a.tar.part").write_bytes(data[:123_456])
    download(f"{server}/a.tar", tmp_path / "a.tar", sha256=hashlib.sha256(data).hexdigest())
    assert Files.requests == [("/a.tar", "bytes=123456-")]
    assert (tmp_path / "a.tar").read_bytes() == data


def test_a_dropped_connection_is_resumed(server, tmp_path):
    data = bytes(np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8))
    Files.files, Files.drop_after = {"/a.tar": data}, 70_000
    download(f"{server}/a.tar", tmp_path / "a.tar", chunk=1 << 14)
    assert (tmp_path / "a.tar").read_bytes() == data
    assert Files.requests[0] == ("/a.tar", None) and Files.requests[1][1].startswith("bytes=")


def test_a_complete_part_file_and_a_server_ignoring_ranges_both_end_right(server, tmp_path):
    data = b"0123456789" * 1000
    Files.files = {"/a.bin": data}
    (tmp_path / "a.bin.part").write_bytes(data)  # complete, but the rename was interrupted
    download(f"{server}/a.bin", tmp_path / "a.bin")
    assert (tmp_path / "a.bin").read_bytes() == data

    (tmp_path / "b.bin.part").write_bytes(data[:500])
    download(f"{server}/norange/a.bin", tmp_path / "b.bin")
    assert (tmp_path / "b.bin").read_bytes() == data


def test_size_or_hash_mismatch_is_refused_and_leaves_no_file(server, tmp_path):
    data = b"x" * 5000
    Files.files = {"/a.bin": data}
    with pytest.raises(DownloadMismatch, match="5001"):
        download(f"{server}/a.bin", tmp_path / "a.bin", expected_size=5001)
    assert not (tmp_path / "a.bin").exists()
    with pytest.raises(DownloadMismatch, match="SHA-256"):
        download(f"{server}/a.bin", tmp_path / "a.bin", sha256="0" * 64)
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()
    assert issubclass(DownloadMismatch, DownloadError) and issubclass(DownloadError, RuntimeError)


def test_http_errors_and_bad_addresses_are_explained(server, tmp_path):
    with pytest.raises(InputError, match="404"):
        download(f"{server}/missing.tar", tmp_path / "m.tar")
    with pytest.raises(InputError, match="http"):
        download("ftp://example.org/x.tar", tmp_path / "x.tar")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["../evil.nii.gz", "/tmp/evil.nii.gz", "a/../../evil.nii.gz"])
def test_a_tar_escaping_the_folder_is_refused_before_anything_is_written(tmp_path, name):
    path = tmp_path / "bad.tar"
    path.write_bytes(_tar({"IXI002-Guys-0828-T1.nii.gz": b"ok", name: b"evil"}))
    with pytest.raises(InputError, match="refused"):
        extract_tar(path, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "evil.nii.gz").exists()


def test_a_tar_with_a_link_is_refused(tmp_path):
    link = tarfile.TarInfo("IXI002-Guys-0828-T2.nii.gz")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    path = tmp_path / "link.tar"
    path.write_bytes(_tar({"IXI002-Guys-0828-T1.nii.gz": b"ok"}, extra=[link]))
    with pytest.raises(InputError, match="link"):
        extract_tar(path, tmp_path / "out")


def test_extraction_skips_files_already_there(tmp_path, ixi_tars):
    path = tmp_path / "IXI-T1.tar"
    path.write_bytes(ixi_tars["/IXI-T1.tar"])
    files = extract_tar(path, tmp_path / "raw")
    assert sorted(p.name for p in files) == sorted(f"{s}-T1.nii.gz" for s in SUBJECTS)
    stamps = {p: p.stat().st_mtime_ns for p in files}
    files[0].write_bytes(b"truncated")
    again = extract_tar(path, tmp_path / "raw")
    untouched = [p for p in again if p != files[0]]
    assert {p: p.stat().st_mtime_ns for p in untouched} == {p: stamps[p] for p in untouched}
    assert files[0].stat().st_size > len(b"truncated")


def test_fetch_ixi_downloads_extracts_lists_and_splits(server, tmp_path, ixi_tars):
    Files.files = dict(ixi_tars)
    out = fetch_ixi(tmp_path / "ixi", base_url=server)
    listing = json.loads((out / "subjects.json").read_text())
    names = [s["subject"] for s in listing["subjects"]]
    assert names == ["IXI002-Guys-0828", "IXI012-HH-1211", "IXI013-HH-1212"]
    assert listing["incomplete"] == {"IXI014-HH-1236": {"missing": ["PD"]}}
    assert (out / listing["subjects"][0]["files"]["PD"]).is_file()
    split = Split.load(out / "split.json")
    assert sorted(split.subjects) == names and split.train and split.val and split.test
    requests = len(Files.requests)
    fetch_ixi(tmp_path / "ixi", base_url=server)  # extracted already: nothing downloaded again
    assert len(Files.requests) == requests
