"""Attacks on `mrimpute`'s inputs, and what each now gets (issue "Reliability", defects 3-17 on the input side).

Every test is one attack, named by the behaviour it now meets; exit code 2 means a sentence naming the
input, what is wrong and what to do, never a traceback.

| attack | outcome |
|---|---|
| a `.nii.gz` cut in half, given to impute, preprocess and compare | exit 2 naming the file: "cut short" |
| a `.nii` cut in half | refused, saying how much of the voxel data is there |
| NaN and infinite voxels (ITK reads them as 0) | refused with the count of non-finite voxels |
| an all-NaN volume | "all N voxels are NaN or infinite", not "same value (0.0)" |
| `--input T1=a --input t1n=b` | exit 2: T1 given twice, before anything is written |
| a bundle .zip whose member declares 256 MiB for a 1 MB file | refused from the sizes alone, in milliseconds |
| bundle.json edited (contrast order reversed) | refused: it no longer matches its manifest_sha256 |
| an older bundle without manifest_sha256 | loads as before (explicit backward compatibility) |
| a bundle whose generator is 1e9 channels wide | exit 2 from the configuration, nothing allocated |
| a bundle whose weights have other shapes than its configuration | exit 2 naming the tensors, no traceback |
| kill -9 right after the first checkpoint, before its history line | --resume continues (history healed); a fresh start is refused |
| kill -9 while the first checkpoint is written | --resume says start fresh, a fresh start works, no temporary stays |
| a full disk (small tmpfs) at the first checkpoint | exit 2: "the disk is full", MB needed and free; nothing locked |
| kill -9 of `preprocess --jobs 2` | its workers exit within seconds |
| 1e6 mm voxels | refused on reading, naming the accepted 0.05-20 mm |
| a contrast outside the reference's field of view, not registered | refused: constant inside the brain |
| `--batch-size 0`, `--uncertainty -2`, `--lr nan`, `--epochs -1`, `"epochs": -1` in a config | exit 2 naming the option |
| malformed JSON as `--config`, `--split`, `manifest.json` | exit 2 naming the file, line and column |
| `s1_T1_T2.nii.gz` beside a subject | exit 2: ambiguous, naming the file (not skipped) |
| subject folders behind symbolic links | found |
| an unrecognised image file beside subjects | exit 2 naming it and what was found |
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from MRImputationLib.cli import main
from MRImputationLib.core.errors import InputError
from MRImputationLib.core.io import read_volume, write_volume
from MRImputationLib.core.volume import Volume
from MRImputationLib.data.phantom import PhantomConfig, make_subject, write_phantom, write_subject

LIB = str(REPO / "MRImputation")
ENV = {**os.environ, "PYTHONPATH": LIB, "OMP_NUM_THREADS": "1"}
TINY = {"model": "tiny", "epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "curriculum": "none", "crop": "brain",
        "skip_empty": True, "mixed_precision": "off"}


@pytest.fixture(scope="module")
def patient(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("patient") / "sub-901"
    subject = make_subject(PhantomConfig(shape=(48, 48, 32), misalignment="none", bias_strength=0.05), seed=901,
                           name="sub-901")
    return write_subject(subject, folder)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def _run(capsys, *args: str) -> tuple[int, str]:
    """`mrimpute ARGS --progress json` in this process: (exit code, the last event's message)."""
    code = main([*args, "--progress", "json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return code, lines[-1].get("message", "") if lines else ""


def _argparse(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "MRImputationLib", *args], env=ENV, capture_output=True, text=True,
                          timeout=120)


def _impute(capsys, bundle: Path, out: Path, **inputs: Path) -> tuple[int, str]:
    pairs = [a for name, path in inputs.items() for a in ("--input", f"{name}={path}")]
    return _run(capsys, "impute", "--model", str(bundle), *pairs, "--out", str(out), "--device", "cpu")


def _cut(source: Path, target: Path, compressed: bool) -> Path:
    data = source.read_bytes() if compressed else gzip.decompress(source.read_bytes())
    target.write_bytes(data[: len(data) // 2])
    return target


def test_a_nii_gz_cut_in_half_is_refused_by_impute_preprocess_and_compare_naming_it(tiny_bundle, patient, tmp_path,
                                                                                   capsys):
    (tmp_path / "raw" / "s1").mkdir(parents=True)
    cut = _cut(patient / "sub-901_T2.nii.gz", tmp_path / "raw" / "s1" / "s1_T2.nii.gz", True)
    shutil.copy(patient / "sub-901_T1.nii.gz", tmp_path / "raw" / "s1" / "s1_T1.nii.gz")
    for code, message in (
            _impute(capsys, tiny_bundle, tmp_path / "out", T1=patient / "sub-901_T1.nii.gz", T2=cut),
            _run(capsys, "compare", str(cut), str(patient / "sub-901_T2.nii.gz"), "--out", str(tmp_path / "cmp"))):
        assert code == 2 and "s1_T2.nii.gz: the file is cut short" in message
    code, _ = _run(capsys, "preprocess", str(tmp_path / "raw"), str(tmp_path / "pre"), "--no-n4", "--no-register")
    failed = json.loads((tmp_path / "pre" / "manifest.json").read_text())["subjects"][0]
    assert code == 2 and "s1_T2.nii.gz: the file is cut short" in failed["error"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "cmp").exists()


def test_a_nii_cut_in_half_is_refused_saying_how_much_of_the_voxels_it_holds(patient, tmp_path):
    cut = _cut(patient / "sub-901_T1.nii.gz", tmp_path / "t1.nii", False)
    with pytest.raises(InputError, match=r"t1\.nii: the file is cut short: .*48x48x32 voxels.* 50% of the voxels"):
        read_volume(cut)


def test_nan_and_infinite_voxels_are_refused_with_their_count(tiny_bundle, patient, tmp_path, capsys):
    volume = read_volume(patient / "sub-901_T2.nii.gz")
    array = volume.array.astype(np.float32)
    array[10, 10, :5], array[11, 11, 11] = np.nan, np.inf
    bad = write_volume(volume.with_array(array), tmp_path / "t2_nan.nii.gz")
    code, message = _impute(capsys, tiny_bundle, tmp_path / "out", T1=patient / "sub-901_T1.nii.gz", T2=bad)
    assert code == 2 and "t2_nan.nii.gz: contains 6 NaN or infinite voxels" in message


def test_an_all_nan_volume_is_refused_as_non_finite_not_as_constant(tmp_path):
    path = write_volume(Volume(np.full((8, 8, 8), np.nan, np.float32)), tmp_path / "nan.nii.gz")
    with pytest.raises(InputError, match=r"nan\.nii\.gz: all 512 voxels are NaN or infinite") as error:
        read_volume(path)
    assert "same value" not in str(error.value)


def test_one_contrast_under_two_names_is_refused_before_any_output(tiny_bundle, patient, tmp_path, capsys):
    code, message = _run(capsys, "impute", "--model", str(tiny_bundle), "--input", f"T1={patient / 'sub-901_T1.nii.gz'}",
                         "--input", f"t1n={patient / 'sub-901_T2.nii.gz'}", "--out", str(tmp_path / "out"))
    assert code == 2 and "--input: T1 is given twice" in message and "t1n" in message
    assert not (tmp_path / "out").exists()


def test_a_zipped_bundle_whose_member_declares_far_more_than_its_size_is_refused_from_sizes_alone(tiny_bundle, tmp_path):
    from MRImputationLib.models.loading import load_model

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.write(tiny_bundle / "bundle.json", "bundle.json")
        archive.write(tiny_bundle / "baseline.safetensors", "baseline.safetensors")
        with archive.open("generator.safetensors", "w", force_zip64=True) as member:
            for _ in range(16):
                member.write(bytes(1 << 24))  # 256 MiB of zeros: about 1 MB compressed
    assert bomb.stat().st_size < 4 << 20
    start = time.monotonic()
    with pytest.raises(InputError, match=r"generator\.safetensors holds 268,435,456 bytes but bundle\.json records"):
        load_model(bomb)
    assert time.monotonic() - start < 5  # nothing was decompressed


def _edited(bundle: Path, folder: Path, change, keep_hash: bool = True) -> Path:
    shutil.copytree(bundle, folder)
    document = json.loads((folder / "bundle.json").read_text())
    change(document)
    if not keep_hash:
        document.pop("manifest_sha256")
    (folder / "bundle.json").write_text(json.dumps(document))
    return folder


def test_an_edited_bundle_json_is_refused_by_its_manifest_hash(tiny_bundle, tmp_path):
    from MRImputationLib.models.bundle import read_bundle_info

    edited = _edited(tiny_bundle, tmp_path / "b", lambda d: d.__setitem__("contrasts", d["contrasts"][::-1]))
    with pytest.raises(InputError, match="bundle.json was changed after export.*manifest_sha256"):
        read_bundle_info(edited)


def test_a_bundle_from_before_the_manifest_hash_still_loads(tiny_bundle, tmp_path):
    from MRImputationLib.models.loading import load_model

    old = _edited(tiny_bundle, tmp_path / "old", lambda d: None, keep_hash=False)
    assert load_model(old).contrasts.names == ("T1", "T2", "PD")


def test_a_bundle_with_a_network_a_billion_channels_wide_is_refused_before_allocating(tiny_bundle, patient, tmp_path,
                                                                                       capsys):
    def widen(document):
        document["model"]["generator"].update(base_width=10**9, max_width=10**9)

    wide = _edited(tiny_bundle, tmp_path / "wide", widen, keep_hash=False)
    code, message = _impute(capsys, wide, tmp_path / "out", T1=patient / "sub-901_T1.nii.gz")
    assert code == 2 and "generator base_width 1000000000: must be a whole number from 1 to 4096" in message


def test_a_bundle_whose_weights_do_not_fit_its_configuration_exits_2_naming_the_tensors(tiny_bundle, patient,
                                                                                        tmp_path, capsys):
    other = _edited(tiny_bundle, tmp_path / "other", lambda d: d["model"]["generator"].update(max_width=64),
                    keep_hash=False)
    code, message = _impute(capsys, other, tmp_path / "out", T1=patient / "sub-901_T1.nii.gz")
    assert code == 2 and "the weights do not fit the network bundle.json describes" in message
    assert "has shape [32, 32, 4, 4], the configuration needs [64, 32, 4, 4]" in message


def _train_child(pre: Path, run: Path, config: Path, patch: str) -> subprocess.CompletedProcess:
    """`mrimpute train` in a child process, after `patch` (Python source) has run in it."""
    code = (f"import os, signal, sys\n{patch}\nfrom MRImputationLib.cli import main\n"
            f"sys.exit(main(['train', {str(pre)!r}, '--out', {str(run)!r}, '--config', {str(config)!r}, "
            "'--progress', 'json']))\n")
    return subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=600)


def test_kill_9_after_the_first_checkpoint_resumes_and_refuses_a_fresh_start(tiny_bundle, tiny_config, tmp_path,
                                                                            capsys):
    pre, run = tiny_bundle.parent / "pre", tmp_path / "run"
    killed = _train_child(pre, run, tiny_config, "from MRImputationLib.training import trainer\n"
                          "trainer.Trainer._history = lambda self, record: os.kill(os.getpid(), signal.SIGKILL)")
    assert killed.returncode == -signal.SIGKILL
    code, message = _run(capsys, "train", str(pre), "--out", str(run), "--config", str(tiny_config))
    assert code == 2 and "continue it with --resume" in message
    code, message = _run(capsys, "train", str(pre), "--out", str(run), "--resume")
    assert code == 0, message  # before the fix: "no checkpoint to resume from; start without --resume"
    history = [json.loads(line)["epoch"] for line in (run / "history.jsonl").read_text().splitlines()]
    assert history == [1, 2]


def test_kill_9_while_the_first_checkpoint_is_written_lets_a_fresh_start_run_and_leaves_no_temporary(
        tiny_bundle, tiny_config, tmp_path, capsys):
    pre, run = tiny_bundle.parent / "pre", tmp_path / "run"
    killed = _train_child(pre, run, tiny_config, "import torch\nreal = torch.save\n"
                          "def cut(obj, f, *a, **k):\n    real(obj, f, *a, **k)\n    os.kill(os.getpid(), signal.SIGKILL)\n"
                          "torch.save = cut")
    assert killed.returncode == -signal.SIGKILL and any(".tmp-" in p.name for p in (run / "checkpoints").iterdir())
    code, message = _run(capsys, "train", str(pre), "--out", str(run), "--resume")
    assert code == 2 and "start without --resume" in message
    assert _run(capsys, "train", str(pre), "--out", str(run), "--config", str(tiny_config))[0] == 0
    assert not [p.name for p in (run / "checkpoints").iterdir() if ".tmp-" in p.name]


FULL_DISK_DRIVER = '''
import json, os, subprocess, sys
pre, mount, config = sys.argv[1:4]
run = os.path.join(mount, "run")
fill = ("from MRImputationLib.training import trainer\\n"
        "real = trainer.save_checkpoint\\n"
        "def full(path, state):\\n"
        "    with open(os.path.join(%r, 'filler'), 'ab') as f:\\n"
        "        try:\\n"
        "            while True:\\n"
        "                f.write(bytes(1 << 16)); f.flush()\\n"
        "        except OSError:\\n"
        "            pass\\n"
        "    return real(path, state)\\n"
        "trainer.save_checkpoint = full\\n") % mount
def train(patch, *extra):
    code = ("import os, sys\\n" + patch + "from MRImputationLib.cli import main\\n"
            "sys.exit(main(['train', %r, '--out', %r, '--config', %r, '--progress', 'json'] + %r))" % (pre, run, config, list(extra)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    events = [json.loads(l) for l in done.stdout.splitlines() if l.startswith("{")]
    return done.returncode, events[-1].get("message", "") if events else done.stderr[-2000:]
full = train(fill)
left = sorted(os.listdir(run)) + sorted("checkpoints/" + n for n in os.listdir(os.path.join(run, "checkpoints")))
os.remove(os.path.join(mount, "filler"))
resume = train("", "--resume")
fresh = train("")
print(json.dumps({"full": full, "left": left, "resume": resume, "fresh": fresh}))
'''


def test_a_full_disk_at_the_first_checkpoint_says_so_with_the_space_needed_and_locks_nothing(tiny_bundle, tiny_config,
                                                                                           tmp_path):
    if not sys.platform.startswith("linux") or not shutil.which("unshare"):
        pytest.skip("needs Linux's unshare to mount a small tmpfs in a private mount namespace")
    mount, driver = tmp_path / "small-disk", tmp_path / "driver.py"
    mount.mkdir()
    driver.write_text(FULL_DISK_DRIVER)
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mount}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (unshare -rm: {probe.stderr.strip()[:200]})")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64m tmpfs {mount} && "
                           f"{sys.executable} {driver} {tiny_bundle.parent / 'pre'} {mount} {tiny_config}"],
                          env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    code, message = result["full"]
    assert code == 2 and "the disk is full: writing best.pt needs about" in message and "MB are free there" in message
    assert "history.jsonl" not in result["left"] and not [n for n in result["left"] if ".tmp-" in n]
    assert result["resume"][0] == 2 and "start without --resume" in result["resume"][1]
    assert result["fresh"][0] == 0, result["fresh"][1]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat and int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def test_preprocess_workers_exit_when_their_parent_is_killed(tmp_path):
    from MRImputationLib.core.locking import process_alive

    if not Path("/proc/self/stat").exists():
        pytest.skip("finding a process's children needs /proc")
    write_phantom(tmp_path / "raw", 4, PhantomConfig(shape=(96, 96, 64)), seed=3)
    parent = subprocess.Popen([sys.executable, "-m", "MRImputationLib", "preprocess", str(tmp_path / "raw"),
                               str(tmp_path / "out"), "--jobs", "2", "--progress", "json"], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.monotonic() + 60, []
    while len(workers) < 2 and time.monotonic() < deadline:
        workers = [p for p in _children(parent.pid) if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]
        time.sleep(0.1)
    assert len(workers) == 2, "the pool did not start two workers"
    time.sleep(3)  # well into the subjects
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while any(process_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(process_alive(p) for p in workers)


def test_voxels_a_kilometre_wide_are_refused_naming_the_accepted_range(tiny_bundle, patient, tmp_path, capsys):
    import SimpleITK as sitk

    image = sitk.ReadImage(str(patient / "sub-901_T2.nii.gz"))
    image.SetSpacing((1e6, 1e6, 1e6))
    sitk.WriteImage(image, str(tmp_path / "huge_T2.nii.gz"))
    code, message = _impute(capsys, tiny_bundle, tmp_path / "out", T1=patient / "sub-901_T1.nii.gz",
                            T2=tmp_path / "huge_T2.nii.gz")
    assert code == 2 and "huge_T2.nii.gz: voxel size 1e+06 x 1e+06 x 1e+06 mm is not plausible" in message
    assert "0.05-20 mm" in message


def test_a_contrast_outside_the_references_field_of_view_is_refused_by_preprocess(patient, tmp_path, capsys):
    import SimpleITK as sitk

    (tmp_path / "raw" / "s1").mkdir(parents=True)
    shutil.copy(patient / "sub-901_T1.nii.gz", tmp_path / "raw" / "s1" / "s1_T1.nii.gz")
    image = sitk.ReadImage(str(patient / "sub-901_T2.nii.gz"))
    image.SetOrigin(tuple(o + 1e5 for o in image.GetOrigin()))
    sitk.WriteImage(image, str(tmp_path / "raw" / "s1" / "s1_T2.nii.gz"))
    code, _ = _run(capsys, "preprocess", str(tmp_path / "raw"), str(tmp_path / "pre"), "--no-n4", "--no-register")
    failed = json.loads((tmp_path / "pre" / "manifest.json").read_text())["subjects"][0]
    assert code == 2 and "s1_T2.nii.gz) is constant (0) inside the brain" in failed["error"]


@pytest.mark.parametrize("args, option", [
    (["impute", "--model", "m", "--input", "T1=a.nii.gz", "--out", "o", "--batch-size", "0"], "--batch-size"),
    (["impute", "--model", "m", "--input", "T1=a.nii.gz", "--out", "o", "--uncertainty", "-2"], "--uncertainty"),
    (["train", "data", "--out", "o", "--lr", "nan"], "--lr"),
    (["train", "data", "--out", "o", "--epochs", "-1"], "--epochs"),
    (["preprocess", "in", "out", "--jobs", "0"], "--jobs"),
])
def test_nonsense_option_values_exit_2_naming_the_option(args, option):
    done = _argparse(*args)
    assert done.returncode == 2 and f"argument {option}:" in done.stderr and "Traceback" not in done.stderr


def test_nonsense_settings_in_a_config_file_exit_2_naming_the_file_and_setting(tiny_bundle, tmp_path, capsys):
    config = tmp_path / "neg.json"
    config.write_text(json.dumps({**TINY, "epochs": -1}))
    code, message = _run(capsys, "train", str(tiny_bundle.parent / "pre"), "--out", str(tmp_path / "run"),
                         "--config", str(config))
    assert code == 2 and "neg.json: training setting epochs = -1" in message


@pytest.mark.parametrize("which", ["--config", "--split", "manifest.json"])
def test_malformed_json_files_exit_2_naming_the_file(which, tiny_bundle, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"epochs": 3,')
    data, extra = tiny_bundle.parent / "pre", ["--config", "tiny"]
    if which == "manifest.json":
        data = tmp_path / "pre"
        data.mkdir()
        bad = data / "manifest.json"
        bad.write_text("{not json")
    else:
        extra = [which, str(bad)] + (["--config", "tiny"] if which == "--split" else [])
    code, message = _run(capsys, "train", str(data), "--out", str(tmp_path / "run"), *extra)
    assert code == 2 and str(bad) in message and ("not valid JSON" in message or "not a valid split" in message)


def _subject_files(folder: Path, patient: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        contrast = name.rsplit("_", 1)[-1].split(".")[0]
        shutil.copy(patient / f"sub-901_{contrast if contrast in ('T1', 'T2', 'PD') else 'T1'}.nii.gz", folder / name)


def test_a_file_naming_two_contrasts_is_an_ambiguity_error_not_skipped(patient, tmp_path, capsys):
    _subject_files(tmp_path / "raw" / "s1", patient, "s1_PD.nii.gz", "s1_T1_T2.nii.gz")
    code, message = _run(capsys, "preprocess", str(tmp_path / "raw"), str(tmp_path / "pre"))
    assert code == 2 and "s1/s1_T1_T2.nii.gz (ambiguous, it names T1, T2)" in message


def test_subject_folders_behind_symbolic_links_are_found(patient, tmp_path):
    from MRImputationLib.data.discovery import discover_subjects

    _subject_files(tmp_path / "elsewhere" / "s1", patient, "s1_T1.nii.gz", "s1_T2.nii.gz")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "s1").symlink_to(tmp_path / "elsewhere" / "s1", target_is_directory=True)
    (tmp_path / "data" / "loop").symlink_to(tmp_path / "data", target_is_directory=True)  # a cycle is walked once
    (subject,) = discover_subjects(tmp_path / "data")
    assert subject.subject == "s1" and sorted(subject.files) == ["T1", "T2"]


def test_an_unrecognised_file_beside_subjects_is_named_in_the_error(patient, tmp_path, capsys):
    _subject_files(tmp_path / "raw" / "s1", patient, "s1_T1.nii.gz", "s1_T2.nii.gz", "s1_scan7.nii.gz")
    code, message = _run(capsys, "preprocess", str(tmp_path / "raw"), str(tmp_path / "pre"))
    assert code == 2 and "s1/s1_scan7.nii.gz (names no contrast)" in message and "s1: T1, T2" in message
