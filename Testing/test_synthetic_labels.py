"""A synthetic volume says so wherever it goes: the NIfTI `mrimpute impute` writes (its descrip, read back
with nibabel), and the Slicer node with the DICOM tags Slicer's exporter reads (on `slicer-core`)."""

from __future__ import annotations

import doctest
import os
import time

import nibabel as nib
import numpy as np
import pytest
import slicer  # the slicer-core package (pyproject's test extra)

from MRImputationLib.core import labels
from MRImputationLib.core.io import read_volume, write_volume
from MRImputationLib.core.volume import Volume
from MRImputationLib.slicer import bridge


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """An untrained tiny T1/T2/PD bundle (random weights: seconds, not a training) and a phantom subject."""
    from MRImputationLib.data.phantom import PhantomConfig, make_subject, write_subject
    from MRImputationLib.slicer.self_test_data import untrained_bundle

    root = tmp_path_factory.mktemp("labels")
    subject = make_subject(PhantomConfig(shape=(48, 48, 32), misalignment="none", bias_strength=0.05), seed=904,
                           name="sub-904")
    return untrained_bundle(root / "bundle"), write_subject(subject, root / "sub-904")


def _descrip(path) -> str:
    return nib.load(str(path)).header["descrip"].item().decode("ascii")


def test_the_label_doctests_hold():
    assert doctest.testmod(labels).failed == 0


def test_labels_fit_their_fields_and_say_synthetic():
    long_model = "a-model-with-a-very-long-name-indeed " * 4
    assert len(labels.nifti_description("FLAIR", "uncertainty", long_model)) <= 79
    tags = labels.dicom_series_tags("FLAIR", "synthetic", long_model)
    assert all(len(v) <= 64 for v in tags.values())
    assert tags["SeriesDescription"].startswith("SYNTHETIC FLAIR") and "SYNTHETIC" in tags["ImageType"]
    assert tags["ImageType"].startswith("DERIVED\\SECONDARY") and tags["Modality"] == "MR"


def test_a_description_is_written_into_the_nifti_header(tmp_path):
    volume = Volume(np.arange(24, dtype=np.float32).reshape(2, 3, 4), spacing=(1.0, 1.0, 2.0))
    written = write_volume(volume, tmp_path / "pd.nii.gz", description="SYNTHETIC PD é" + "x" * 100)
    assert _descrip(written).startswith("SYNTHETIC PD ?") and len(_descrip(written)) == 79
    plain = write_volume(volume, tmp_path / "plain.nii.gz")
    assert _descrip(plain) == ""
    assert np.array_equal(read_volume(written).array, read_volume(plain).array)


def test_mrimpute_impute_writes_synthetic_niftis_that_say_so(untrained, tmp_path):
    from MRImputationLib.pipelines.impute import ImputeOptions, impute

    bundle, patient = untrained
    inputs = {c: patient / f"sub-904_{c}.nii.gz" for c in ("T1", "T2")}
    report = impute(bundle, inputs, tmp_path / "out", ImputeOptions(n4=False, register=False, uncertainty=1,
                                                                   device="cpu"))
    model = f"{report['model']['name']} {report['model']['version']}"
    synthetic = _descrip(tmp_path / "out" / report["files"]["synthetic"]["PD"])
    assert synthetic == f"SYNTHETIC PD, not acquired: MRImputation {model}"
    assert _descrip(tmp_path / "out" / report["files"]["uncertainty"]["PD"]).startswith("SYNTHETIC PD uncertainty")
    assert _descrip(tmp_path / "out" / "brain_mask.nii.gz") == ""  # only what was synthesized says so


def test_a_synthetic_output_node_carries_the_dicom_tags_slicers_exporter_reads(scene):
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient 1"), "MRI")
    volume = Volume(np.random.default_rng(0).random((4, 5, 6)).astype(np.float32))
    t1 = bridge.add_volume_node(volume, "T1")
    bridge.place_in_hierarchy(t1, study)
    node = bridge.add_output_node(volume, "PD", {"kind": "synthetic", "contrast": "PD", "model": "ixi-mmgan",
                                                 "modelVersion": "1.2.0"}, [t1])
    assert node.GetName() == "PD (synthetic)"  # named as synthetic even when the caller forgot
    item = hierarchy.GetItemByDataNode(node)
    assert hierarchy.GetItemParent(item) == study
    expected = labels.dicom_series_tags("PD", "synthetic", "ixi-mmgan 1.2.0")
    for tag, value in expected.items():
        assert hierarchy.GetItemAttribute(item, f"DICOM.{tag}") == value  # what the export dialog reads
        assert node.GetAttribute(f"DICOM.{tag}") == value
    assert hierarchy.GetItemAttribute(item, "DICOM.SeriesDescription") == "SYNTHETIC PD, not acquired (MR Imputation)"
    assert hierarchy.GetItemAttribute(item, "DICOM.ImageType") == "DERIVED\\SECONDARY\\SYNTHETIC"
    assert bridge.get_attributes(node)["kind"] == "synthetic"


def test_uncertainty_and_error_maps_are_marked_derived_and_plain_outputs_are_left_alone(scene):
    volume = Volume(np.ones((4, 5, 6), np.float32))
    uncertainty = bridge.add_output_node(volume, "PD uncertainty", {"kind": "uncertainty", "contrast": "PD"})
    assert uncertainty.GetName() == "PD uncertainty"
    assert uncertainty.GetAttribute("DICOM.SeriesDescription").startswith("SYNTHETIC PD uncertainty")
    error = bridge.add_output_node(volume, "PD error", {"kind": "error", "contrast": "PD"})
    assert "SYNTHETIC" in error.GetAttribute("DICOM.SeriesDescription")
    other = bridge.add_output_node(volume, "something", {})
    assert other.GetAttribute("DICOM.SeriesDescription") is None


@pytest.mark.skipif(os.name == "nt", reason="the stand-in Python is a /bin/sh script")
def test_a_blocking_imputation_that_times_out_raises_timeout_error_and_adds_nothing(scene, untrained, tmp_path):
    from MRImputationLib.models.store import ModelStore
    from MRImputationLib.slicer.imputation_logic import ImputationLogic

    bundle, patient = untrained
    nodes = {c: bridge.add_volume_node(read_volume(patient / f"sub-904_{c}.nii.gz"), f"sub-904_{c}")
             for c in ("T1", "T2")}
    slow_python = tmp_path / "python"
    slow_python.write_text("#!/bin/sh\nexec sleep 60\n")
    slow_python.chmod(0o755)
    logic = ImputationLogic(ModelStore(folder=tmp_path / "models"), python=str(slow_python))
    before = scene.GetNumberOfNodes()
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish within 1 s; it was stopped"):
        logic.impute(nodes, bundle, timeout=1)
    assert time.monotonic() - start < 10
    assert scene.GetNumberOfNodes() == before
