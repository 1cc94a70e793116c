"""What the panel decides without Slicer: selections, pre-filling, commands, devices, dependency plans."""

from __future__ import annotations

import os

import pytest

from MRImputationLib.cli import build_parser
from MRImputationLib.slicer.dependencies import (ANTSPYX, ANTSPYX_REAL_NEEDS, REQUIREMENTS, SLICER_BUNDLED, TORCH,
                                          install_plan, missing, status_text)
from MRImputationLib.core.errors import InputError
from MRImputationLib.slicer.devices import describe_devices
from MRImputationLib.slicer.imputation_decisions import (ImputationOptions, compare_command, impute_command, prefill,
                                                         provenance, selection_state)
from MRImputationLib.slicer.job import child_environment, lib_folder
from MRImputationLib.core.contrasts import BRATS, IXI


@pytest.mark.parametrize("selected, valid, text", [
    ({"T1": 1, "T2": 2}, True, "given T1, T2 → synthesizing PD"),
    ({"PD": 3}, True, "given PD → synthesizing T1, T2"),
    ({}, False, "Select at least one input volume (T1, T2 or PD)."),
    ({"T1": 1, "T2": 2, "PD": 3}, False, "nothing is missing"),
    ({"T1": None, "T2": "", "PD": 3}, True, "given PD → synthesizing T1, T2"),
])
def test_selection_states_say_what_will_happen_or_why_not(selected, valid, text):
    state = selection_state(IXI, selected)
    assert state.valid is valid
    assert text in (state.statement if valid else state.reason)
    assert state.as_tuple() == (valid, state.reason)


def test_a_scenario_the_model_was_not_trained_for_is_refused_with_what_it_can_do():
    state = selection_state(IXI, {"T1": 1}, trained_scenarios=["110", "011"])
    assert not state.valid and "not trained for given T1 → synthesizing T2, PD" in state.reason
    assert "given T1, T2 → synthesizing PD" in state.reason


def test_no_model_and_one_node_for_two_contrasts_are_refused():
    assert "Choose a model first" in selection_state(None, {"T1": 1}).reason
    node = object()
    assert "same volume" in selection_state(IXI, {"T1": node, "T2": node}).reason


def test_selectors_are_prefilled_from_brats_and_ixi_names_and_skip_our_outputs():
    names = ["BraTS-GLI-00001-000-t1n", "BraTS-GLI-00001-000-t2f", "BraTS-GLI-00001-000-seg", "FLAIR (synthetic)",
             "BraTS-GLI-00001-000-t1c", "Segmentation"]
    assert prefill(BRATS.names, names, skip=["FLAIR (synthetic)"]) == {
        "T1": "BraTS-GLI-00001-000-t1n", "T1c": "BraTS-GLI-00001-000-t1c", "FLAIR": "BraTS-GLI-00001-000-t2f"}
    assert prefill(IXI.names, ["IXI002-Guys-0828-PD", "IXI002-Guys-0828-T1", "IXI002-Guys-0828-T1 copy"]) == {
        "T1": "IXI002-Guys-0828-T1", "PD": "IXI002-Guys-0828-PD"}


def test_the_impute_command_is_what_the_command_line_accepts():
    options = ImputationOptions(n4=False, register=False, device="cpu", precision="bf16", uncertainty=3,
                                self_check=True)
    command = impute_command("/opt/Slicer/bin/PythonSlicer", "/models/m", {"t1": "/in/T1.nii.gz", "T2": "/in/T2.nii.gz"},
                             "/out", options, references={"PD": "/in/PD.nii.gz"})
    assert command[:4] == ["/opt/Slicer/bin/PythonSlicer", "-m", "MRImputationLib", "impute"]
    args = build_parser().parse_args(command[3:])
    assert args.input == ["T1=/in/T1.nii.gz", "T2=/in/T2.nii.gz"] and args.reference == ["PD=/in/PD.nii.gz"]
    assert (args.device, args.precision, args.uncertainty, args.no_n4, args.no_register, args.self_check) == (
        "cpu", "bf16", 3, True, True, True)
    assert args.progress == "json"
    compare = build_parser().parse_args(compare_command("py", "s.nii.gz", "r.nii.gz", "o", same_units=True)[3:])
    assert (compare.synthetic, compare.real, compare.same_units, compare.progress) == ("s.nii.gz", "r.nii.gz", True, "json")


@pytest.mark.parametrize("change, message", [
    ({"device": "gpu"}, "device 'gpu'"),
    ({"precision": "int8"}, "precision 'int8'"),
    ({"uncertainty": 51}, r"0 \(off\) to 50"),
])
def test_impossible_options_are_refused_before_starting(change, message):
    with pytest.raises(InputError, match=message):
        ImputationOptions(**change).arguments()


def test_the_child_finds_the_lib_whatever_its_pythonpath():
    env = child_environment({"PYTHONPATH": os.pathsep.join(["/a", str(lib_folder())]), "HOME": "/h"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(lib_folder()), "/a"] and env["HOME"] == "/h"
    assert (lib_folder() / "MRImputationLib" / "cli.py").is_file()


def test_the_device_line_says_what_was_detected_and_warns_on_small_gpus():
    assert "auto uses the GPU" in describe_devices({"torch": "2.4", "cuda": True, "gpu": "A100", "gpu_memory_gb": 80})
    assert "Less than 6 GB" in describe_devices({"torch": "2.4", "cuda": True, "gpu": "MX150", "gpu_memory_gb": 2.0})
    assert "PyTorch extension" in describe_devices({"torch": None, "cuda": False})
    assert describe_devices(None) == "Detecting devices…"


def test_provenance_records_model_version_hash_and_scenario():
    report = {"model": {"name": "m", "version": "1.2"}, "model_sha256": {"generator.safetensors": "a" * 64},
              "scenario": "110", "given": ["T1", "T2"], "units": "normalized x 1000", "device": "cpu"}
    attributes = provenance(report, "given T1, T2 → synthesizing PD", "synthetic")
    assert attributes["model"] == "m" and attributes["modelVersion"] == "1.2" and attributes["modelSha256"] == "a" * 64
    assert attributes["scenario"] == "110" and attributes["given"] == "T1,T2" and attributes["kind"] == "synthetic"


def test_the_install_plan_never_touches_slicers_own_packages():
    plan = install_plan(missing(REQUIREMENTS, lambda module: module in ("numpy", "scipy", "SimpleITK")),
                        {"numpy": "1.26.4", "scipy": "1.13.1", "SimpleITK": "2.4.0"})
    assert plan.torch and not plan.broken
    assert plan.no_deps == ["antspyx>=0.5"]
    assert not {"numpy", "scipy", "SimpleITK"} & {p.split(">")[0].split("=")[0] for p in plan.pip}
    assert {r.name for r in ANTSPYX_REAL_NEEDS} <= set(plan.pip) and "torch>=2.1" not in plan.pip
    assert plan.constraints_text() == "numpy==1.26.4\nscipy==1.13.1\nSimpleITK==2.4.0\n"
    assert "antspyx>=0.5: registering the inputs" in plan.question() and "kept as they are" in plan.question()


def test_a_missing_bundled_package_is_reported_not_installed():
    plan = install_plan([SLICER_BUNDLED[0], TORCH], {})
    assert plan.broken == ["numpy"] and plan.pip == [] and plan.no_deps == []
    assert install_plan([]).empty
    assert status_text([TORCH, ANTSPYX], lambda module: False).endswith("torch, antspyx.")
    assert status_text(REQUIREMENTS, lambda module: True) == "All dependencies are installed."


def test_the_builtin_model_matching_the_loaded_volumes_is_preselected():
    from MRImputationLib.models.store import ModelCard
    from MRImputationLib.slicer.imputation_decisions import preselected_model

    def card(name, contrasts, builtin):
        return ModelCard(name, "1.0", list(contrasts), contrasts[0], f"/m/{name}", None, None, builtin)

    cards = [card("installed-brats", ["T1", "T1c", "FLAIR"], False), card("ixi", ["T1", "T2", "PD"], True),
             card("brats", ["T1", "T1c", "FLAIR"], True)]
    brats_case = ["BraTS-GLI-00001-000-t1n", "BraTS-GLI-00001-000-t1c", "BraTS-GLI-00001-000-t2f", "FLAIR (synthetic)"]
    assert preselected_model(cards, brats_case) == "brats-1.0"
    assert preselected_model(cards, brats_case, current="installed-brats-1.0") == "installed-brats-1.0"
    assert preselected_model(cards, ["IXI002-Guys-0828-T2", "IXI002-Guys-0828-PD"]) == "ixi-1.0"
    assert preselected_model(cards, ["T2 (synthetic)"], skip=["T2 (synthetic)"]) is None
    assert preselected_model(cards[:1], brats_case) is None  # only built-in models are preselected
