"""The MRML bridge on real Slicer classes (the `slicer-core` package): geometry, outputs, colors, tables.

Every check of a node's geometry is against Slicer's own reader (vtkMRMLVolumeArchetypeStorageNode)
or against the physical position of every voxel, never against our own formulas alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import slicer  # the slicer-core package (pyproject's test extra): missing means the set-up is broken, not a skip

from conftest import LPS_CASE, RAS_CASE, real_case
from MRImputationLib.slicer import bridge
from MRImputationLib.core.errors import InputError
from MRImputationLib.core.io import read_volume
from MRImputationLib.core.volume import Volume


def _slicer_read(scene, path):
    """A node read by Slicer's own volume reader."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    return node


def _ras_of_every_voxel(node) -> np.ndarray:
    """(z, y, x, 3) RAS positions of a node's voxels, from its IJK->RAS (world) matrix."""
    k, j, i = np.indices(slicer.util.arrayFromVolume(node).shape)
    ijk1 = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(float)
    return (ijk1 @ bridge.node_ijk_to_world(node).T)[..., :3]


def _oblique_volume() -> Volume:
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    angle = np.deg2rad(27)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    rng = np.random.default_rng(3)
    return Volume(rng.normal(100, 20, (9, 10, 12)).astype(np.float32), spacing=(0.7, 1.1, 2.3),
                  origin=(12.5, -30.25, 7.0), direction=tuple(rotation.ravel()), contrast="T2")


@pytest.mark.parametrize("case", [LPS_CASE, RAS_CASE], ids=["LPS", "RAS"])
def test_real_case_round_trips_node_and_file_as_slicer_reads_them(scene, case, tmp_path):
    path = real_case(case) / f"{case.name}-t1n.nii.gz"
    volume = read_volume(path)
    node = bridge.add_volume_node(volume, "t1")
    by_slicer = _slicer_read(scene, path)
    np.testing.assert_allclose(bridge.node_ijk_to_world(node), bridge.node_ijk_to_world(by_slicer), atol=1e-6)
    assert np.array_equal(slicer.util.arrayFromVolume(node), slicer.util.arrayFromVolume(by_slicer))

    back = bridge.volume_from_node(node)
    assert back.same_grid(volume) and np.array_equal(back.array, volume.array) and back.array.dtype == np.int16

    written = bridge.write_node(node, tmp_path / "t1.nii.gz")
    reread = _slicer_read(scene, written)
    np.testing.assert_allclose(bridge.node_ijk_to_world(reread), bridge.node_ijk_to_world(node), atol=1e-5)
    assert np.array_equal(slicer.util.arrayFromVolume(reread), volume.array)


def test_oblique_anisotropic_volume_keeps_every_voxel_in_place_through_node_and_file(scene, tmp_path):
    volume = _oblique_volume()
    node = bridge.add_volume_node(volume, "oblique")
    k, j, i = np.indices(volume.shape)
    lps = volume.index_to_physical(np.stack([i, j, k], axis=-1))
    np.testing.assert_allclose(_ras_of_every_voxel(node), lps * [-1, -1, 1], atol=1e-9)

    back = bridge.volume_from_node(node, contrast="T2")
    np.testing.assert_allclose(back.spacing, volume.spacing, atol=1e-12)
    np.testing.assert_allclose(back.direction, volume.direction, atol=1e-12)
    np.testing.assert_allclose(back.origin, volume.origin, atol=1e-12)
    assert np.array_equal(back.array, volume.array) and back.contrast == "T2"

    for name in ("oblique.nii.gz", "oblique.nrrd"):
        reread = _slicer_read(scene, bridge.write_node(node, tmp_path / name))
        np.testing.assert_allclose(_ras_of_every_voxel(reread), lps * [-1, -1, 1], atol=1e-4)  # float32 headers
        assert np.array_equal(slicer.util.arrayFromVolume(reread), volume.array)


def test_a_linear_parent_transform_moves_the_voxels_it_carries(scene):
    node = bridge.add_volume_node(_oblique_volume(), "moved")
    before = _ras_of_every_voxel(node)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = np.eye(4)
    matrix[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    matrix[:3, 3] = [5, -3, 10]
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(matrix))
    node.SetAndObserveTransformNodeID(transform.GetID())
    moved = bridge.volume_from_node(node)
    k, j, i = np.indices(moved.shape)
    ras = moved.index_to_physical(np.stack([i, j, k], axis=-1)) * [-1, -1, 1]
    np.testing.assert_allclose(ras, before @ matrix[:3, :3].T + matrix[:3, 3], atol=1e-9)


def test_non_scalar_and_empty_nodes_are_refused_with_a_reason(scene):
    with pytest.raises(InputError, match="no volume"):
        bridge.volume_from_node(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode"))
    vector = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    slicer.util.updateVolumeFromArray(vector, np.zeros((2, 3, 4, 3), np.uint8))
    with pytest.raises(InputError, match="rgb: is not a single-component scalar volume"):
        bridge.volume_from_node(vector)


def test_output_node_records_provenance_sits_in_the_inputs_study_and_has_a_fixed_window(scene):
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient 1")
    study = hierarchy.CreateStudyItem(patient, "MRI 2024")
    t1 = bridge.add_volume_node(_oblique_volume(), "T1")
    bridge.place_in_hierarchy(t1, study)
    synthetic = bridge.add_output_node(_oblique_volume(), "PD (synthetic)",
                                       {"model": "mmgan", "modelVersion": "1.0", "scenario": "110"}, [t1])
    assert synthetic.GetName() == "PD (synthetic)"
    assert synthetic.GetAttribute("MRImputation.scenario") == "110"
    assert bridge.get_attributes(synthetic) == {"model": "mmgan", "modelVersion": "1.0", "scenario": "110"}
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(synthetic)) == study
    display = synthetic.GetDisplayNode()
    low, high = bridge.window_level(slicer.util.arrayFromVolume(synthetic))
    assert not display.GetAutoWindowLevel()
    assert display.GetWindowLevelMin() == pytest.approx(low) and display.GetWindowLevelMax() == pytest.approx(high)


def test_outputs_of_inputs_outside_any_study_go_to_the_scene_level(scene):
    t1 = bridge.add_volume_node(_oblique_volume(), "T1")
    output = bridge.add_output_node(_oblique_volume(), "PD (synthetic)", {}, [t1])
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(output)) == hierarchy.GetSceneItemID()


def test_error_color_table_is_magma_dark_to_light_and_made_once(scene):
    colors = bridge.error_color_node()
    assert colors.GetName() == bridge.OWN_ERROR_COLOR_NAME and colors.GetNumberOfColors() == 256
    rgba = np.array([colors.GetLookupTable().GetTableValue(i) for i in range(256)])
    luminance = rgba[:, :3] @ [0.2126, 0.7152, 0.0722]
    # Lightness rises steadily, dark (no error) to light (large error), within the table's 8-bit storage.
    assert np.all(np.diff(luminance) > -0.005) and np.all(np.diff(luminance[::16]) > 0)
    assert luminance[0] < 0.05 and luminance[-1] > 0.9
    assert bridge.error_color_node() is colors


def test_slicers_own_magma_table_is_preferred_when_the_scene_has_it(scene):
    magma = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "Magma")
    assert bridge.error_color_node() is magma


def test_metrics_table_lists_the_project_metrics_then_the_legacy_ones(scene):
    metrics = {"psnr": 31.2, "ssim": 0.912, "mae": 0.031, "mse": 0.0008, "units": 812.0, "legacy_psnr": 29.0,
               "legacy_ssim": 0.88}
    table = bridge.metrics_table_node(metrics, "PD error metrics")
    assert table.GetName() == "PD error metrics" and table.GetNumberOfColumns() == 3
    names = [table.GetCellText(r, 0) for r in range(table.GetNumberOfRows())]
    assert names == ["PSNR", "SSIM", "MAE", "MSE", "PSNR (legacy MM-GAN, whole slice)",
                     "SSIM (legacy MM-GAN, whole slice)"]
    assert float(table.GetCellText(0, 1)) == pytest.approx(31.2)
    assert slicer.util.arrayFromTableColumn(table, "value")[1] == pytest.approx(0.912)


def test_compare_layout_makes_three_linked_axial_views_reference_synthetic_error(scene):
    from MRImputationLib.slicer import views

    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    layout = slicer.vtkMRMLLayoutLogic()
    layout.SetMRMLScene(scene)
    layout.GetLayoutNode().SetViewArrangement(views.register_compare_layout(layout.GetLayoutNode()))
    slices = {scene.GetNthNodeByClass(i, "vtkMRMLSliceNode").GetLayoutName(): scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
              for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"))}
    assert all(slices[tag].GetOrientation() == "Axial" for tag, _, _ in views.VIEWS)
    for tag, _, _ in views.VIEWS:  # in Slicer the slice logics make these
        scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode").SetLayoutName(tag)
    reference, synthetic, error = (bridge.add_volume_node(_oblique_volume(), n) for n in ("PD", "PD (synthetic)", "err"))
    nodes = views.fill_compare_views(scene, reference, synthetic, error)
    assert [(n.GetBackgroundVolumeID(), n.GetForegroundVolumeID()) for n in nodes] == [
        (reference.GetID(), None), (synthetic.GetID(), None), (reference.GetID(), error.GetID())]
    assert all(n.GetLinkedControl() for n in nodes)


def test_logic_imputes_from_nodes_to_new_nodes_next_to_the_inputs(scene, tiny_bundle):
    from MRImputationLib.slicer.imputation_decisions import ImputationOptions
    from MRImputationLib.models.store import ModelStore
    from MRImputationLib.data.phantom import PhantomConfig, make_subject
    from MRImputationLib.slicer.imputation_logic import ImputationLogic

    subject = make_subject(PhantomConfig(shape=(48, 48, 32), misalignment="none", bias_strength=0.05), seed=902)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "sub-902"), "MR")
    nodes = {c: bridge.add_volume_node(v, f"sub-902_{c}") for c, v in subject.observed.items()}
    for node in nodes.values():
        bridge.place_in_hierarchy(node, study)
    progress = []
    logic = ImputationLogic(ModelStore(folder=tiny_bundle.parent / "no-models"))
    outputs = logic.impute({"T1": nodes["T1"], "T2": nodes["T2"]}, tiny_bundle,
                           ImputationOptions(n4=False, register=False, uncertainty=2, self_check=True),
                           on_progress=progress.append, timeout=180)
    assert [n.GetName() for n in outputs] == ["PD (synthetic)", "PD uncertainty"]
    assert progress and progress[-1].stage in ("synthesize", "uncertainty", "self-check")
    attributes = bridge.get_attributes(outputs[0])
    assert attributes["scenario"] == "110" and attributes["scenarioText"] == "given T1, T2 → synthesizing PD"
    assert attributes["model"] and attributes["modelVersion"] and len(attributes["modelSha256"]) == 64
    assert bridge.volume_from_node(outputs[0]).same_grid(subject.observed["T1"])
    assert all(hierarchy.GetItemParent(hierarchy.GetItemByDataNode(n)) == study for n in outputs)
    table = scene.GetNodeByID(attributes["selfCheckTable"])
    assert table.GetNumberOfRows() == 2 and {table.GetCellText(r, 0) for r in range(2)} == {"T1", "T2"}



def test_logic_compares_a_synthetic_volume_with_the_real_one_into_an_error_map_and_a_table(scene, tmp_path):
    from MRImputationLib.preprocessing.masking import brain_mask
    from MRImputationLib.models.store import ModelStore
    from MRImputationLib.preprocessing.normalization import NormalizationConfig, fit_normalization, normalize
    from MRImputationLib.data.phantom import PhantomConfig, make_subject
    from MRImputationLib.slicer.imputation_logic import ImputationLogic

    subject = make_subject(PhantomConfig(shape=(48, 48, 32), misalignment="none"), seed=903)
    real = subject.observed["PD"]
    # A perfect synthesis: the real volume itself, in the model's units (normalized x 1000, as compare expects).
    params = fit_normalization(real, brain_mask([real]), NormalizationConfig(method="percentile", clip=False))
    perfect = real.with_array(normalize(real, params).array * 1000.0)
    real_node = bridge.add_volume_node(real, "sub-903_PD")
    synthetic = bridge.add_output_node(perfect, "PD (synthetic)", {"kind": "synthetic", "contrast": "PD",
                                                                    "units": "normalized x 1000"}, [real_node])
    comparison = ImputationLogic(ModelStore(folder=tmp_path / "models")).compare(synthetic, real_node, timeout=180)
    assert comparison.ok, comparison.error
    outputs = comparison.outputs
    assert outputs.error_node.GetName() == "PD error" and outputs.metrics["psnr"] > 40
    assert [outputs.table.GetCellText(r, 0) for r in range(3)] == ["PSNR", "SSIM", "MAE"]
    assert outputs.error_node.GetDisplayNode().GetColorNodeID() == bridge.error_color_node().GetID()
    assert bridge.volume_from_node(outputs.error_node).same_grid(real)
    assert bridge.get_attributes(outputs.error_node)["real"] == "sub-903_PD"


def test_logic_refuses_a_selection_that_cannot_work_before_starting_anything(scene, tiny_bundle):
    from MRImputationLib.models.store import ModelStore
    from MRImputationLib.slicer.imputation_logic import ImputationLogic

    node = bridge.add_volume_node(_oblique_volume(), "T1")
    logic = ImputationLogic(ModelStore(folder=tiny_bundle.parent / "no-models"))
    with pytest.raises(InputError, match="Select at least one input volume"):
        logic.start_impute({}, tiny_bundle)
    with pytest.raises(InputError, match="same volume is selected for two contrasts"):
        logic.start_impute({"T1": node, "T2": node}, tiny_bundle)
