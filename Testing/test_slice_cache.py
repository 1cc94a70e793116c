"""The slice cache: built from a preprocessed folder, reused when unchanged, read by SliceDataset."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from MRImputationLib.core.errors import InputError
from MRImputationLib.core.io import read_volume, write_volume
from MRImputationLib.core.contrasts import IXI, ContrastSet
from MRImputationLib.preprocessing.normalization import NormalizationParameters, denormalize, fit_normalization, normalize
from MRImputationLib.preprocessing.manifest import MANIFEST_FORMAT, MANIFEST_NAME
from MRImputationLib.data.phantom import PhantomConfig, make_subject
from MRImputationLib.models.slicing import SlicingConfig
from MRImputationLib.training.slice_cache import (
    SliceDataset,
    build_cache,
    load_subject_mask,
    load_subject_slices,
    read_cache_index,
)
from MRImputationLib.models.slicing import from_slices, plan_slices, to_slices

SMALL = SlicingConfig(size=32, crop="brain", skip_empty=True)


def _record(out: Path, name: str, seed: int, contrasts=("T1", "T2", "PD")) -> dict:
    """What `preprocess_subject` records, made from a phantom's aligned truth (no registration needed)."""
    subject = make_subject(PhantomConfig(shape=(40, 36, 20), contrasts=contrasts), seed, name=name)
    folder = out / name
    outputs, normalization = {}, {}
    for contrast, volume in subject.truth.items():
        write_volume(volume, folder / f"{name}_{contrast}.nii.gz", dtype=np.float32)
        outputs[contrast] = f"{name}/{name}_{contrast}.nii.gz"
        normalization[contrast] = fit_normalization(volume, subject.brain_mask).to_dict()
    write_volume(subject.brain_mask, folder / f"{name}_brainmask.nii.gz", dtype=np.uint8)
    return {
        "subject": name, "reference": "PD", "contrasts": list(outputs), "status": "ok",
        "steps": {"reference": "PD", "n4": {}, "registration": {}, "normalization": normalization},
        "outputs": outputs, "mask": f"{name}/{name}_brainmask.nii.gz", "qc": [], "seconds": 0.1,
    }


def _write_manifest(out: Path, records: list[dict]) -> None:
    manifest = {"format": MANIFEST_FORMAT, "software": "test", "source": "phantom", "config": {}, "seconds": 0.0,
                "subjects": records}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("preprocessed")
    records = [_record(out, "sub-000", 1), _record(out, "sub-001", 2), _record(out, "sub-002", 3, ("T1", "PD"))]
    records.append({"subject": "sub-003", "status": "failed", "error": "no head found", "bad_input": True})
    _write_manifest(out, records)
    return out


def test_cache_holds_normalized_slices_masks_and_how_they_were_made(preprocessed, tmp_path):
    cache = build_cache(preprocessed, IXI, tmp_path / "cache", SMALL)
    index = read_cache_index(cache)
    assert sorted(index["subjects"]) == ["sub-000", "sub-001", "sub-002"]
    assert set(index["skipped"]) == {"sub-003"}
    # A subject that lacks T2 is cached with what it has: T2 is a zero channel, marked absent.
    assert index["subjects"]["sub-002"]["present"] == ["T1", "PD"]
    lacking, _ = load_subject_slices(cache, "sub-002")
    assert not np.asarray(lacking[:, 1]).any() and np.asarray(lacking[:, 0]).any()
    dataset = SliceDataset(cache, ["sub-000", "sub-002"])
    assert dataset.presence(0) == (True, True, True) and dataset.presence(len(dataset) - 1) == (True, False, True)
    assert index["contrasts"] == IXI.to_dict() and index["config"] == SMALL.to_dict()

    slices, geometry = load_subject_slices(cache, "sub-000")
    entry = index["subjects"]["sub-000"]
    assert slices.shape == (entry["slices"], 3, 32, 32) and slices.dtype == np.float32
    assert isinstance(slices, np.memmap)
    masks = load_subject_mask(cache, "sub-000")
    assert masks.shape == (entry["slices"], 32, 32) and masks.dtype == np.uint8 and masks.any()

    record = json.loads((preprocessed / MANIFEST_NAME).read_text())["subjects"][0]
    mask = read_volume(preprocessed / record["mask"])
    volumes = [read_volume(preprocessed / record["outputs"][c]) for c in IXI.names]
    params = [NormalizationParameters.from_dict(record["steps"]["normalization"][c]) for c in IXI.names]
    expected_geometry = plan_slices(volumes[2], mask.array, 32, "brain", True, SMALL.margin_mm)
    assert geometry == expected_geometry
    expected = to_slices(np.stack([normalize(v, p).array for v, p in zip(volumes, params)]), geometry)
    np.testing.assert_allclose(slices, expected, atol=1e-6)
    assert entry["normalization"]["T2"] == record["steps"]["normalization"]["T2"]

    # Back to the grid and to the input's units: the raw T2 through the same slicing, inside the brain.
    back = denormalize(volumes[1].with_array(from_slices(np.asarray(slices), geometry)[1]), params[1]).array
    resliced = from_slices(to_slices(volumes[1].array[None], geometry), geometry)[0]
    inside = mask.array > 0
    np.testing.assert_allclose(back[inside], resliced[inside], rtol=1e-4, atol=1e-3 * resliced[inside].max())


def test_an_unchanged_cache_is_reused_and_a_changed_one_rebuilt(preprocessed, tmp_path, monkeypatch):
    import MRImputationLib.training.slice_cache as slice_cache

    cache = build_cache(preprocessed, IXI, tmp_path / "cache", SMALL)
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}

    def refuse(*args, **kwargs):
        raise AssertionError("rebuilt a subject that was cached already")

    monkeypatch.setattr(slice_cache, "_cache_subject", refuse)
    build_cache(preprocessed, IXI, cache, SMALL)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps
    monkeypatch.undo()

    bigger = SlicingConfig(size=48, crop="full", skip_empty=False)
    build_cache(preprocessed, IXI, cache, bigger)
    slices, geometry = load_subject_slices(cache, "sub-001")
    assert slices.shape[2:] == (48, 48) and geometry.slice_range == (0, geometry.oriented_shape[0])
    assert read_cache_index(cache)["config"] == bigger.to_dict()


def test_only_subjects_whose_manifest_record_changed_are_rebuilt(preprocessed, tmp_path, monkeypatch):
    import MRImputationLib.training.slice_cache as slice_cache

    copy = tmp_path / "pre"
    copy.mkdir()
    for name in ("sub-000", "sub-001", "sub-002"):
        (copy / name).symlink_to(preprocessed / name)
    manifest = json.loads((preprocessed / MANIFEST_NAME).read_text())
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    cache = build_cache(copy, IXI, tmp_path / "cache", SMALL)

    manifest["subjects"][1]["seconds"] = 42.0  # sub-001 preprocessed again
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    rebuilt = []
    original = slice_cache._cache_subject
    monkeypatch.setattr(slice_cache, "_cache_subject",
                        lambda pre, record, *a: rebuilt.append(record["subject"]) or original(pre, record, *a))
    build_cache(copy, IXI, cache, SMALL)
    assert rebuilt == ["sub-001"]


def test_refuses_subjects_that_cannot_be_cached(preprocessed, tmp_path):
    with pytest.raises(InputError, match="sub-003.*failed"):
        build_cache(preprocessed, IXI, tmp_path / "cache", SMALL, subjects=["sub-000", "sub-003"])
    with pytest.raises(InputError, match="not in the manifest"):
        build_cache(preprocessed, IXI, tmp_path / "cache", SMALL, subjects=["nobody"])
    with pytest.raises(InputError, match="no preprocessed subject has any of T1c, FLAIR"):
        build_cache(preprocessed, ContrastSet(("T1c", "FLAIR")), tmp_path / "cache", SMALL)
    with pytest.raises(InputError, match="manifest.json"):
        build_cache(tmp_path, IXI, tmp_path / "cache", SMALL)


def test_a_subset_build_keeps_subjects_cached_earlier(preprocessed, tmp_path):
    cache = build_cache(preprocessed, IXI, tmp_path / "cache", SMALL, subjects=["sub-001"])
    assert list(read_cache_index(cache)["subjects"]) == ["sub-001"]
    build_cache(preprocessed, IXI, cache, SMALL, subjects=["sub-000"])
    assert sorted(read_cache_index(cache)["subjects"]) == ["sub-000", "sub-001"]


def test_dataset_indexes_every_slice_of_its_subjects_in_order(preprocessed, tmp_path):
    import torch

    cache = build_cache(preprocessed, IXI, tmp_path / "cache", SMALL)
    dataset = SliceDataset(cache, ["sub-001", "sub-000"])
    first, _ = load_subject_slices(cache, "sub-001")
    second, _ = load_subject_slices(cache, "sub-000")
    assert len(dataset) == len(first) + len(second)
    image, mask = dataset[len(first)]
    assert image.dtype == torch.float32 and image.shape == (3, 32, 32) and mask.shape == (32, 32)
    np.testing.assert_array_equal(image.numpy(), second[0])
    np.testing.assert_array_equal(dataset[-1][0].numpy(), second[-1])
    np.testing.assert_array_equal(mask.numpy(), load_subject_mask(cache, "sub-000")[0])
    assert dataset.locate(len(first) + 2) == ("sub-000", 2)
    with pytest.raises(IndexError):
        dataset[len(dataset)]
    with pytest.raises(InputError, match="not in the slice cache"):
        SliceDataset(cache, ["sub-003"])

    dataset[0]
    clone = pickle.loads(pickle.dumps(dataset))  # what DataLoader workers receive: no memory maps inside
    assert clone._arrays is None
    np.testing.assert_array_equal(clone[3][0].numpy(), dataset[3][0].numpy())
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch[0].shape == (4, 3, 32, 32) and batch[1].shape == (4, 32, 32)


def test_flip_augmentation_mirrors_left_right_reproducibly(preprocessed, tmp_path):
    import torch

    cache = build_cache(preprocessed, IXI, tmp_path / "cache", SMALL)
    plain = SliceDataset(cache, ["sub-000"])
    flipping = SliceDataset(cache, ["sub-000"], augment_flip=True)

    def draw():
        torch.manual_seed(5)
        return [flipping[i] for i in range(len(flipping))]

    first, again = draw(), draw()
    flipped = 0
    for i, ((image, mask), (image2, _)) in enumerate(zip(first, again)):
        torch.testing.assert_close(image, image2)
        reference, reference_mask = plain[i]
        if torch.equal(image, reference.flip(-1)) and not torch.equal(image, reference):
            flipped += 1
            assert torch.equal(mask, reference_mask.flip(-1))
        else:
            assert torch.equal(image, reference)
    assert 0 < flipped < len(first)


def test_cache_from_the_real_preprocessing(tmp_path):
    """The same cache from `preprocess_folder`'s own output (skipped until its building blocks exist)."""
    pytest.importorskip("MRImputationLib.preprocessing.registration")
    pytest.importorskip("MRImputationLib.preprocessing.bias")
    from MRImputationLib.preprocessing.folder import preprocess_folder
    from MRImputationLib.data.phantom import write_phantom
    from MRImputationLib.preprocessing.subject import PreprocessConfig

    write_phantom(tmp_path / "raw", 2, PhantomConfig(shape=(40, 36, 20)), seed=3)
    preprocess_folder(tmp_path / "raw", tmp_path / "pre", PreprocessConfig(n4=False, register=False, qc=False))
    cache = build_cache(tmp_path / "pre", IXI, tmp_path / "cache", SMALL)
    index = read_cache_index(cache)
    assert sorted(index["subjects"]) == ["sub-000", "sub-001"]
    dataset = SliceDataset(cache, sorted(index["subjects"]))
    assert len(dataset) == sum(e["slices"] for e in index["subjects"].values()) > 0
