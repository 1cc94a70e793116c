"""The Sample Data entry (a real four-contrast case, by URL and SHA-256): the checksums are those of the
shared copy of the case, the URLs are pinned, the node names say their contrasts, and the module
registers it once Slicer's start-up is complete (the standard SampleData pattern)."""

from __future__ import annotations

import ast
import doctest
import hashlib
import re

from conftest import LPS_CASE, REPO, real_case
from MRImputationLib.core.contrasts import contrast_from_filename
from MRImputationLib.slicer import sample_data
from MRImputationLib.slicer.sample_data import CASE, FILES, registration_arguments

MODULE_FILE = REPO / "MRImputation" / "MRImputation.py"


def test_the_checksums_are_those_of_the_real_case_files():
    folder = real_case(LPS_CASE)
    assert folder.name == CASE
    for sample in FILES:
        digest = hashlib.sha256((folder / sample.file_name).read_bytes()).hexdigest()
        assert digest == sample.sha256, sample.file_name
    assert sorted(p.name for p in folder.glob("*.nii.gz")) == sorted(f.file_name for f in FILES)


def test_four_contrasts_with_names_the_input_selectors_recognise():
    assert [f.contrast for f in FILES] == ["T1", "T1c", "T2", "FLAIR"]
    for sample in FILES:
        assert contrast_from_filename(sample.node_name) == sample.contrast
        assert contrast_from_filename(sample.file_name) == sample.contrast


def test_the_urls_are_pinned_to_a_commit_and_end_in_the_file_names():
    for sample in FILES:
        assert re.fullmatch(r"https://raw\.githubusercontent\.com/BrainLesion/tutorials/[0-9a-f]{40}/BraTS/data/"
                            rf"segmentation/{CASE}/{re.escape(sample.file_name)}", sample.url)


def test_the_registration_arguments_line_up_file_by_file():
    arguments = registration_arguments("icon.png")
    columns = ("uris", "fileNames", "nodeNames", "checksums", "loadFileTypes")
    assert {len(arguments[c]) for c in columns} == {len(FILES)}
    assert arguments["category"] == "MRImputation" and arguments["thumbnailFileName"] == "icon.png"
    assert all(re.fullmatch(r"SHA256:[0-9a-f]{64}", c) for c in arguments["checksums"])
    assert doctest.testmod(sample_data).failed == 0


def test_the_module_registers_the_sample_data_when_startup_is_complete():
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    [module_class] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MRImputation"]
    connects = [ast.unparse(n) for n in ast.walk(module_class) if isinstance(n, ast.Call)
                and ast.unparse(n.func) == "slicer.app.connect"]
    assert connects == ["slicer.app.connect('startupCompleted()', registerSampleData)"]
    [function] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "registerSampleData"]
    assert "register_sample_data" in ast.unparse(function)
