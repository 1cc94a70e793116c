"""Installed models, the catalogue, imports from disk and downloads (from a loopback HTTP server)."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
from functools import partial
from pathlib import Path

import pytest

from conftest import REPO
from MRImputationLib.models.bundle import zip_bundle
from MRImputationLib.core.errors import InputError
from MRImputationLib.models.catalogue import _REQUIRED
from MRImputationLib.models.store import (CatalogueEntry, DownloadDeclined, ModelStore, adopt_legacy_models,
                                         default_models_folder, legacy_models_folders, move_models, read_catalogue,
                                         verify_bundle)
from MRImputationLib.slicer.self_test_data import SELF_TEST_MODEL, untrained_bundle

RESOURCES = REPO / "MRImputation" / "Resources"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return untrained_bundle(tmp_path_factory.mktemp("store") / "bundle")


@pytest.fixture(scope="module")
def bundle_zip(bundle) -> Path:
    return zip_bundle(bundle, bundle.parent / "bundle.zip")


@pytest.fixture
def server(bundle_zip, monkeypatch):
    """A loopback HTTP server serving the bundle's folder; `requests` lists the paths asked for."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(bundle_zip.parent)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def _entry(url: str, path: Path, **changes) -> CatalogueEntry:
    data = path.read_bytes()
    fields = dict(name=SELF_TEST_MODEL, version="0.0.1", url=url, sha256=hashlib.sha256(data).hexdigest(),
                  size=len(data), contrasts=["T1", "T2", "PD"], reference="PD", intended_use="tests")
    return CatalogueEntry(**{**fields, **changes})


def test_a_bundle_folder_is_imported_checked_and_listed_with_its_model_card(bundle, tmp_path):
    store = ModelStore(tmp_path / "models")
    card = store.import_bundle(bundle)
    assert card.path == tmp_path / "models" / f"{SELF_TEST_MODEL}-0.0.1" and card.installed
    assert [c.id for c in store.installed()] == [card.id]
    page = store.installed()[0].to_html()
    assert "T1, T2, PD (reference PD)" in page and "Self-test only" in page and "Installed in" in page
    assert verify_bundle(card.path).name == SELF_TEST_MODEL


def test_a_zipped_bundle_is_imported_as_a_folder(bundle_zip, tmp_path):
    card = ModelStore(tmp_path / "models").import_bundle(bundle_zip)
    assert card.path.is_dir() and (card.path / "bundle.json").is_file() and (card.path / "generator.safetensors").is_file()


def test_tampered_weights_are_refused_and_nothing_is_installed(bundle, tmp_path):
    copy = shutil.copytree(bundle, tmp_path / "tampered")
    weights = copy / "generator.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    store = ModelStore(tmp_path / "models")
    with pytest.raises(InputError, match="generator.safetensors is corrupted or modified"):
        store.import_bundle(copy)
    assert store.installed() == []


def test_importing_the_same_model_twice_needs_replace(bundle, tmp_path):
    store = ModelStore(tmp_path / "models")
    store.import_bundle(bundle)
    with pytest.raises(InputError, match="already installed"):
        store.import_bundle(bundle)
    assert store.import_bundle(bundle, replace=True).installed


def test_clear_removes_installed_models_and_leaves_other_files(bundle, tmp_path):
    store = ModelStore(tmp_path / "models")
    store.import_bundle(bundle)
    (tmp_path / "models" / "notes.txt").write_text("mine")
    assert store.clear() == 1
    assert store.installed() == [] and (tmp_path / "models" / "notes.txt").read_text() == "mine"


def test_the_shipped_catalogue_is_valid_empty_and_matches_its_schema(tmp_path):
    assert read_catalogue(RESOURCES / "models.json") == []
    schema = json.loads((RESOURCES / "models.schema.json").read_text())
    item = schema["properties"]["models"]["items"]
    assert tuple(item["required"]) == _REQUIRED
    assert set(item["properties"]) == set(CatalogueEntry.__dataclass_fields__)
    example = tmp_path / "example.json"
    example.write_text(json.dumps(schema["examples"][0]))
    entries = read_catalogue(example)
    assert [e.name for e in entries] == ["mmgan-ixi-T1-T2-PD"] and "218.0 MB" in entries[0].consent_question()


@pytest.mark.parametrize("change, message", [
    ({"sha256": "abc"}, "'sha256' must be 64"),
    ({"size": 0}, "'size' must be"),
    ({"url": "ftp://x/y.zip"}, "'url' must be an http"),
    ({"contrasts": ["T1"]}, "'contrasts' must list"),
])
def test_catalogue_errors_name_the_entry_and_the_field(tmp_path, change, message):
    item = {"name": "m", "version": "1", "url": "https://x/m.zip", "sha256": "0" * 64, "size": 10,
            "contrasts": ["T1", "T2"], **change}
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"format_version": 1, "models": [item]}))
    with pytest.raises(InputError, match=r"models\[0\]") as error:
        read_catalogue(path)
    assert message in str(error.value)


def test_catalogue_models_are_offered_until_installed(bundle, tmp_path):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"format_version": 1, "models": [
        {"name": SELF_TEST_MODEL, "version": "0.0.1", "url": "https://x/m.zip", "sha256": "0" * 64, "size": 2_500_000,
         "contrasts": ["T1", "T2", "PD"]}]}))
    store = ModelStore(tmp_path / "models", catalogue=path)
    [offered] = store.cards()
    assert not offered.installed and "download, 2.5 MB" in offered.label() and "Download" in offered.to_html()
    store.import_bundle(bundle)
    assert [c.installed for c in store.cards()] == [True]


def test_download_happens_only_after_consent_then_is_verified_and_installed(server, bundle_zip, tmp_path):
    url, requests = server
    entry = _entry(f"{url}/bundle.zip", bundle_zip)
    asked, fractions = [], []
    store = ModelStore(tmp_path / "models")
    card = store.download(entry, lambda e: asked.append(e.consent_question()) or True,
                          lambda fraction, message: fractions.append(fraction))
    assert asked and "kB" in asked[0] and "127.0.0.1" in asked[0] and "SHA-256" in asked[0]
    assert requests == ["/bundle.zip"] and fractions[-1] == 1.0
    assert card.installed and [c.id for c in store.installed()] == [card.id]
    assert not list((tmp_path / "models" / ".downloads").glob("*"))


def test_a_declined_download_fetches_nothing(server, bundle_zip, tmp_path):
    url, requests = server
    store = ModelStore(tmp_path / "models")
    with pytest.raises(DownloadDeclined, match="Import the bundle from disk"):
        store.download(_entry(f"{url}/bundle.zip", bundle_zip), lambda e: False)
    assert requests == [] and store.installed() == []


def test_a_download_with_the_wrong_checksum_is_discarded(server, bundle_zip, tmp_path):
    url, _ = server
    store = ModelStore(tmp_path / "models")
    with pytest.raises(Exception, match="SHA-256"):
        store.download(_entry(f"{url}/bundle.zip", bundle_zip, sha256="f" * 64), lambda e: True)
    assert store.installed() == [] and not list((tmp_path / "models").rglob("*.zip*"))


def test_models_live_in_a_persistent_folder_of_the_user_never_a_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "home"))
    monkeypatch.delenv("MRIMPUTATION_MODELS", raising=False)
    assert default_models_folder() == tmp_path / "home" / ".mrimputation" / "models"
    assert "cache" not in str(default_models_folder()).lower()
    monkeypatch.setenv("MRIMPUTATION_MODELS", str(tmp_path / "elsewhere"))
    assert default_models_folder() == tmp_path / "elsewhere"
    assert legacy_models_folders(tmp_path / "slicer-cache") == [tmp_path / "slicer-cache" / "MRImputation" / "models"]


def _old_install(folder: Path, bundle: Path, names=("a-1.0", "b-2.0")) -> Path:
    for name in names:
        shutil.copytree(bundle, folder / name)
    (folder / "b-2.0.zip").write_bytes(b"zipped by hand")
    (folder / "notes.txt").write_text("not a bundle")
    return folder


def test_models_in_the_old_place_are_moved_and_names_already_present_are_skipped(bundle, tmp_path):
    old = _old_install(tmp_path / "cache" / "MRImputation" / "models", bundle)
    new = tmp_path / "models"
    shutil.copytree(bundle, new / "b-2.0")
    (new / "b-2.0" / "mine").write_text("kept")
    report = adopt_legacy_models(new, cache_path=tmp_path / "cache")
    assert sorted(report.moved) == ["a-1.0", "b-2.0.zip"] and report.skipped == ["b-2.0"]
    assert (new / "a-1.0" / "generator.safetensors").is_file() and (new / "b-2.0.zip").is_file()
    assert (new / "b-2.0" / "mine").read_text() == "kept" and (old / "b-2.0" / "bundle.json").is_file()
    assert sorted(p.name for p in old.iterdir()) == ["b-2.0", "notes.txt"]
    assert "moved 2 installed model(s)" in report.message(new) and "left b-2.0" in report.message(new)
    assert move_models(old, new).moved == []  # a second start has nothing more to move


def test_a_move_across_file_systems_copies_then_removes_and_an_interrupted_one_leaves_the_old_whole(
        bundle, tmp_path, monkeypatch):
    import os

    old = _old_install(tmp_path / "old", bundle, names=("a-1.0",))
    new = tmp_path / "new"
    monkeypatch.setattr(os, "rename", lambda *a: (_ for _ in ()).throw(OSError(18, "cross-device link")))
    real_copytree = shutil.copytree

    def failing_copytree(source, target, **kwargs):
        shutil.copyfile(Path(source) / "bundle.json", Path(target) / "bundle.json")
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copytree", failing_copytree)
    with pytest.raises(OSError, match="disk full"):
        move_models(old, new)
    assert ModelStore(new).installed() == [] and not [p for p in new.iterdir() if not p.name.startswith(".")]
    assert sorted(p.name for p in new.iterdir()) == []  # the temporary copy is gone too
    assert (old / "a-1.0" / "generator.safetensors").is_file() and len(ModelStore(old).installed()) == 1
    monkeypatch.setattr(shutil, "copytree", real_copytree)
    report = move_models(old, new)
    assert report.moved == ["a-1.0", "b-2.0.zip"] and [c.id for c in ModelStore(new).installed()] == [
        f"{SELF_TEST_MODEL}-0.0.1"]
    assert sorted(p.name for p in old.iterdir()) == ["notes.txt"] and (new / "b-2.0.zip").read_bytes() == b"zipped by hand"


def test_an_empty_old_folder_is_removed_and_the_new_one_is_never_moved_into_itself(bundle, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(bundle, old / "a-1.0")
    (old / ".downloads").mkdir()
    assert move_models(old, tmp_path / "new").moved == ["a-1.0"] and not old.exists()
    assert move_models(tmp_path / "new", tmp_path / "new").moved == [] and (tmp_path / "new" / "a-1.0").is_dir()


def test_a_download_on_a_worker_thread_reports_progress_and_its_error(server, bundle_zip, tmp_path):
    from MRImputationLib.slicer.background import BackgroundTask

    url, _ = server
    store = ModelStore(tmp_path / "models")
    task = BackgroundTask(lambda report: store.download(_entry(f"{url}/bundle.zip", bundle_zip), lambda e: True,
                                                        report)).start()
    assert task.wait(timeout=60).finished and task.error is None
    assert task.progress[0] == 1.0 and task.result.installed
    failing = BackgroundTask(lambda report: store.download(_entry(f"{url}/absent.zip", bundle_zip), lambda e: True,
                                                           report)).start()
    assert isinstance(failing.wait(timeout=60).error, InputError) and "404" in str(failing.error)
