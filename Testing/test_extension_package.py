"""The extension as Slicer's build and the extensions index see it, checked without Slicer:

the top-level CMakeLists.txt (CMake floor, project name, complete EXTENSION_* metadata, README and
licence packaged, every module added), the index entry MRImputation.json (its name, the catalog
schema's fields, agreement with the CMake metadata), what the index's validator reads (literal URLs
naming one repository and branch, as a publisher must fill them in), the figures listed as
screenshots (captioned for what they are), the training module's CMake lists against the files on
disk, its .ui against the code, its file scope, and the headless script running `mrimpute train`
(one parser, the library's; a --progress given wins; its help names its own path).
The MRImputation module's own lists are checked in test_module_static_checks.py.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import urlparse

from conftest import REPO, signal_widgets

TOP_CMAKE = REPO / "CMakeLists.txt"
INDEX_ENTRY = REPO / "MRImputation.json"
TRAINING = REPO / "MRImputationTraining"
TRAINING_FILE = TRAINING / "MRImputationTraining.py"
TRAINING_UI = TRAINING / "Resources" / "UI" / "MRImputationTraining.ui"
TRAINING_GLUE = (TRAINING_FILE, REPO / "MRImputation" / "MRImputationLib" / "slicer" / "training_panel.py",
                 REPO / "MRImputation" / "MRImputationLib" / "slicer" / "panel_base.py")
LIGHT_IMPORTS = {"__future__", "os", "typing", "logging", "pathlib", "slicer", "vtk", "qt", "ctk"}
# The extensions index's catalog entry schema (Slicer/Slicer Schemas/slicer-extension-catalog-entry-schema-v1.0.x):
# required fields, and every field it allows with its JSON type (additionalProperties: false).
INDEX_REQUIRED = {"$schema", "category", "scm_url"}
INDEX_FIELDS = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
                "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str, "enabled": bool,
                "tier": int}
EXTENSION_FIELDS = ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS")
WIDGET_FOR_TYPE = {"bool": {"QCheckBox", "ctkCheckBox"}, "int": {"QSpinBox", "QSlider", "ctkSliderWidget"},
                   "str": {"QComboBox", "ctkComboBox", "QLineEdit"}}
SET_BY_THE_PANEL = {"dataFolder", "outputFolder", "contrasts"}  # folders via ctkPathLineEdit, contrasts via check boxes


def _cmake() -> str:
    return TOP_CMAKE.read_text(encoding="utf-8")


def _extension_metadata() -> dict[str, str]:
    found = dict(re.findall(r'set\(EXTENSION_(\w+)\s+"([^"]*)"\s*\)', _cmake()))
    return {k: v for k, v in found.items() if k in EXTENSION_FIELDS}


def _project_name() -> str:
    # The index's own check: the first project(...) of the top-level CMakeLists.txt.
    return re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", _cmake(), re.IGNORECASE)[0].strip("\"'")


def _repository_file(url: str) -> Path:
    """The file in this repository that a raw.githubusercontent.com/<org>/<repo>/<branch>/<path> URL serves."""
    parts = urlparse(url).path.strip("/").split("/")
    return REPO.joinpath(*parts[3:])


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_the_index_entry_is_named_as_the_cmake_project_and_not_slicer_something():
    assert _project_name() == INDEX_ENTRY.stem == "MRImputation"
    assert not _project_name().lower().startswith("slicer")
    assert (REPO / "LICENSE").is_file() and "Apache License" in (REPO / "LICENSE").read_text(encoding="utf-8")


def test_the_extension_metadata_is_complete_and_points_at_files_that_exist():
    meta = _extension_metadata()
    assert set(meta) == set(EXTENSION_FIELDS), f"missing EXTENSION_*: {set(EXTENSION_FIELDS) - set(meta)}"
    assert all(value.strip() for value in meta.values())
    assert meta["CATEGORY"] == "Image Synthesis"
    assert meta["DEPENDS"].split() == ["PyTorch"]
    assert urlparse(meta["HOMEPAGE"]).scheme == "https"
    assert len(meta["DESCRIPTION"]) < 400, "one or two sentences in the extension manager"
    icon = _repository_file(meta["ICONURL"])
    assert meta["ICONURL"].startswith("https://") and icon.is_file() and _png_size(icon) == (128, 128)
    screenshots = meta["SCREENSHOTURLS"].split()
    assert screenshots and all(url.startswith("https://") and _repository_file(url).is_file() for url in screenshots)
    packaged = dict(re.findall(
        r'set\(EXTENSION_(README_FILE|LICENSE_FILE)\s+"\$\{CMAKE_CURRENT_SOURCE_DIR\}/([^"]+)"\)', _cmake()))
    assert packaged == {"README_FILE": "README.md", "LICENSE_FILE": "LICENSE"}, "CPack's description and licence"
    assert all((REPO / name).is_file() for name in packaged.values())


def test_cmake_minimum_required_is_at_least_what_slicer_config_requires():
    floor = re.search(r"cmake_minimum_required\(VERSION (\d+(?:\.\d+)*)(?:\.\.\.[\d.]+)? FATAL_ERROR\)", _cmake())
    version = tuple(int(part) for part in floor.group(1).split("."))
    assert version >= (3, 20, 6), "Slicer 5.12's SlicerConfig.cmake requires CMake 3.20.6"


def test_the_urls_the_index_validator_reads_are_literal_and_name_one_repository_and_branch():
    """ExtensionsIndex/scripts/check_description_files.py finds the icon and screenshot URLs with regular
    expressions (no ${...} expansion), downloads them, and clones scm_url: a publisher replaces the
    placeholder organisation in all of them at once (README, "Publishing")."""
    text, entry = _cmake(), json.loads(INDEX_ENTRY.read_text(encoding="utf-8"))
    icons = re.findall(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', text, re.IGNORECASE | re.MULTILINE)
    shots = re.findall(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', text, re.IGNORECASE | re.MULTILINE)
    assert len(icons) == 1 and len(shots) == 1
    urls = [*icons, *shots[0].split()]
    assert not any("$" in url for url in [*urls, entry["scm_url"]])
    owner_repo = urlparse(entry["scm_url"]).path.strip("/").removesuffix(".git")
    assert _extension_metadata()["HOMEPAGE"] == f"https://github.com/{owner_repo}"
    for url in urls:
        assert url.startswith(f"https://raw.githubusercontent.com/{owner_repo}/{entry['scm_revision']}/"), url
    assert "fill in before submitting" in text and "Publishing" in (REPO / "README.md").read_text(encoding="utf-8")


def test_the_screenshot_urls_are_captioned_result_figures():
    figures = REPO / "Resources" / "Figures"
    captions = (figures / "README.md").read_text(encoding="utf-8")
    assert not (REPO / "Resources" / "Screenshots").exists(), "they are result figures, not Slicer screenshots"
    for url in _extension_metadata()["SCREENSHOTURLS"].split():
        path = _repository_file(url)
        assert path.parent == figures and not path.stem.isdigit() and f"`{path.name}`" in captions
        assert min(_png_size(path)) >= 200


def test_the_top_level_cmake_follows_the_extension_template_and_adds_both_modules():
    text = _cmake()
    order = ["cmake_minimum_required(", "project(MRImputation)", "find_package(Slicer REQUIRED)",
             "include(${Slicer_USE_FILE})", "add_subdirectory(MRImputation)", "add_subdirectory(MRImputationTraining)",
             "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions)
    for folder in re.findall(r"add_subdirectory\((\w+)\)", text):
        assert (REPO / folder / "CMakeLists.txt").is_file() and (REPO / folder / f"{folder}.py").is_file()


def test_the_index_entry_has_only_the_catalog_schema_s_fields_and_agrees_with_cmake():
    entry = json.loads(INDEX_ENTRY.read_text(encoding="utf-8"))
    assert INDEX_REQUIRED <= set(entry) and set(entry) <= set(INDEX_FIELDS)
    for key, value in entry.items():
        assert isinstance(value, INDEX_FIELDS[key]) and not (INDEX_FIELDS[key] is int and isinstance(value, bool)), key
    assert re.search(r"/Schemas/slicer-extension-catalog-entry-schema-v1\.0\.\d+\.json#?$", entry["$schema"])
    assert all(isinstance(d, str) for d in entry["build_dependencies"])
    assert 1 <= entry["tier"] <= 5 and entry.get("scm_type", "git") in ("git", "local")
    meta = _extension_metadata()
    assert entry["category"] == meta["CATEGORY"]
    assert set(meta["DEPENDS"].split()) <= set(entry["build_dependencies"])
    assert urlparse(entry["scm_url"]).scheme == "https" and entry["scm_url"].rstrip("/") == meta["HOMEPAGE"].rstrip("/")
    repository = Path(urlparse(entry["scm_url"]).path).stem
    assert repository == "Slicer" + _project_name(), "the index asks for a repository named Slicer<Extension>"


def _cmake_list(text: str, variable: str) -> list[str]:
    body = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S).group(1)
    return [line.strip().replace("${MODULE_NAME}", "MRImputationTraining") for line in body.splitlines() if line.strip()]


def test_the_training_module_cmake_lists_every_script_and_resource_on_disk():
    text = (TRAINING / "CMakeLists.txt").read_text(encoding="utf-8")
    scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS") + _cmake_list(text, "MODULE_HEADLESS_SCRIPTS")
    on_disk = sorted(str(p.relative_to(TRAINING)) for p in TRAINING.rglob("*.py") if "__pycache__" not in p.parts)
    assert sorted(scripts) == on_disk
    assert _cmake_list(text, "MODULE_HEADLESS_SCRIPTS") == ["train.py"], "train.py is not a module: never in SCRIPTS"
    resources = _cmake_list(text, "MODULE_PYTHON_RESOURCES")
    files = sorted(str(p.relative_to(TRAINING)) for p in (TRAINING / "Resources").rglob("*") if p.is_file())
    assert sorted(resources) == files
    assert "WITH_GENERIC_TESTS" in text and "add_subdirectory(Testing/Python)" in text
    registered = (TRAINING / "Testing" / "Python" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "slicer_add_python_unittest(SCRIPT" in registered and "${MODULE_NAME}.py" in registered
    assert _png_size(TRAINING / "Resources" / "Icons" / "MRImputationTraining.png") == (128, 128)


def _ui_names() -> set[str]:
    root = ElementTree.parse(TRAINING_UI).getroot()
    return {e.get("name") for e in root.iter() if e.tag in ("widget", "layout", "spacer") and e.get("name")}


def test_every_ui_widget_the_training_code_uses_exists_in_the_ui_file():
    used = {}
    for path in TRAINING_GLUE:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value  # self.ui.<name>, panel.ui.<name>, or ui.<name> (the panel's constructor argument)
            if ((isinstance(owner, ast.Attribute) and owner.attr == "ui" and isinstance(owner.value, ast.Name)
                 and owner.value.id in ("self", "panel")) or (isinstance(owner, ast.Name) and owner.id == "ui")):
                used.setdefault(node.attr, path.name)
        for name in signal_widgets(path):
            used.setdefault(name, path.name)
    assert len(used) > 10, "the glue uses few ui widgets: the check is looking in the wrong place"
    missing = {name: where for name, where in used.items() if name not in _ui_names()}
    assert not missing, f"used in code but not in {TRAINING_UI.name}: {missing}"


def _parameter_fields() -> dict[str, str]:
    tree = ast.parse(TRAINING_FILE.read_text(encoding="utf-8"))
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef)
             and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in n.decorator_list)]
    fields = {}
    for statement in cls.body:
        if isinstance(statement, ast.AnnAssign):
            annotation = statement.annotation
            if isinstance(annotation, ast.Subscript):  # Annotated[int, WithinRange(...)]
                annotation = annotation.slice.elts[0]
            fields[statement.target.id] = ast.unparse(annotation)
    return fields


def test_every_parameter_is_bound_to_a_widget_of_a_fitting_type_or_set_by_the_panel():
    bound = {}
    for widget in ElementTree.parse(TRAINING_UI).getroot().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0", f"{widget.get('name')}: SlicerParameterName must be a dynamic property"
                bound[prop.find("string").text] = widget.get("class")
    fields = _parameter_fields()
    assert not set(bound) - set(fields), f"SlicerParameterName without a parameter-node field: {set(bound) - set(fields)}"
    for name, widget_class in bound.items():
        assert widget_class in WIDGET_FOR_TYPE[fields[name]], f"{name}: a {fields[name]} cannot bind to {widget_class}"
    assert set(fields) == set(bound) | SET_BY_THE_PANEL


def test_the_training_module_file_is_thin_and_does_nothing_at_import():
    text = TRAINING_FILE.read_text(encoding="utf-8")
    tree = ast.parse(text)
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            heavy = [n for n in names if n.split(".")[0] not in LIGHT_IMPORTS]
            assert not heavy, f"line {node.lineno}: {heavy} imported at file scope; import it inside the function"
        else:
            docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            assert docstring or isinstance(node, (ast.ClassDef, ast.FunctionDef)), \
                f"line {node.lineno}: statements at file scope run when Slicer loads the module"
    bases = {c.name: [ast.unparse(b) for b in c.bases] for c in tree.body if isinstance(c, ast.ClassDef)}
    assert bases["MRImputationTraining"] == ["ScriptedLoadableModule"]
    assert bases["MRImputationTrainingWidget"] == ["ScriptedLoadableModuleWidget"]
    assert bases["MRImputationTrainingLogic"] == ["ScriptedLoadableModuleLogic"]
    assert bases["MRImputationTrainingTest"] == ["ScriptedLoadableModuleTest"]
    assert '"Image Synthesis"' in text and 'self.parent.dependencies = ["MRImputation"]' in text
    assert len(text.splitlines()) < 250, "keep the module file thin: the work belongs in MRImputationLib"


def _load_train_script():
    spec = importlib.util.spec_from_file_location("mrimputation_train_script", TRAINING / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # guarded by __main__: importing runs nothing
    return module


def test_the_headless_script_runs_mrimpute_train_and_defines_no_option_of_its_own():
    from MRImputationLib.cli import build_parser

    command = _load_train_script().command_line(["--", "/data", "--out", "/run", "--no-evaluate", "--epochs", "2"])
    assert command[0] == "train"
    args = build_parser().parse_args(command)
    assert (args.data, args.out, args.epochs) == ("/data", "/run", 2)
    assert not args.evaluate and args.export, "the script evaluates and exports unless told otherwise"
    assert args.progress == "json", "not on a terminal: one JSON event per line"
    lib = REPO / "MRImputation" / "MRImputationLib"
    assert not (lib / "pipelines" / "headless_training.py").exists()
    for path in (TRAINING / "train.py", *sorted(lib.rglob("*.py"))):
        calls = {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                 for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.Call)}
        if path.name != "cli.py":
            assert "ArgumentParser" not in calls, f"{path.name} defines a second argument parser"


def test_a_progress_choice_given_to_the_headless_script_wins_and_is_the_only_one():
    from MRImputationLib.cli import build_parser

    script = _load_train_script()
    for given in (["--progress", "bar"], ["--progress=none"]):
        command = script.command_line(["--", "/data", "--out", "/run", *given])
        assert sum(a == "--progress" or a.startswith("--progress=") for a in command) == 1
        assert build_parser().parse_args(command).progress == given[-1].split("=")[-1]


def test_the_headless_script_help_names_its_own_path(capsys):
    import pytest

    script = _load_train_script()
    with pytest.raises(SystemExit) as stop:
        script.main(["--", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert str((TRAINING / "train.py").resolve()) in out.splitlines()[0]
    assert "--python-script" in out and "usage: mrimpute train" in out

