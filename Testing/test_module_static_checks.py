"""Checks of the Slicer module that need no Slicer: the .ui, the parameter node, CMake lists, imports.

The module itself runs only inside Slicer (its self-test is MRImputationTest); these catch the
classic breakages before anyone opens Slicer: a renamed widget, an unbound parameter, a Lib file
missing from CMakeLists.txt (so not packaged), a heavy import that slows Slicer's start.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from conftest import REPO, signal_widgets

MODULE = REPO / "MRImputation"
MODULE_FILE = MODULE / "MRImputation.py"
LIB = MODULE / "MRImputationLib"
UI_FILE = MODULE / "Resources" / "UI" / "MRImputation.ui"


def _lib_files() -> list[Path]:
    """Every Python file of the Lib, in its subpackages too."""
    return sorted(p for p in LIB.rglob("*.py") if "__pycache__" not in p.parts)


# The files that use self.ui.<name>.
GLUE_FILES = (MODULE_FILE, LIB / "slicer" / "imputation_panel.py", LIB / "slicer" / "panel_base.py")
LIGHT_IMPORTS = {"__future__", "os", "typing", "logging", "pathlib", "slicer", "vtk", "qt", "ctk"}
# Which widget class each parameter type binds to (parameterNodeWrapper's GUI connectors match exact classes).
WIDGET_FOR_TYPE = {"bool": {"QCheckBox", "ctkCheckBox"}, "int": {"QSpinBox", "QSlider", "ctkSliderWidget"},
                   "str": {"QComboBox", "ctkComboBox", "QLineEdit"}, "vtkMRMLScalarVolumeNode": {"qMRMLNodeComboBox"}}


def _ui_widgets() -> dict[str, ElementTree.Element]:
    root = ElementTree.parse(UI_FILE).getroot()
    return {e.get("name"): e for e in root.iter() if e.tag in ("widget", "layout", "spacer") and e.get("name")}


def _bound_parameters() -> list[tuple[str, str]]:
    """(SlicerParameterName, widget class) pairs, from the .ui's dynamic properties."""
    bound = []
    for widget in ElementTree.parse(UI_FILE).getroot().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0", f"{widget.get('name')}: SlicerParameterName must be a dynamic property"
                bound.append((prop.find("string").text, widget.get("class")))
    return bound


def _parameter_fields() -> dict[str, str]:
    """Field -> base type name of the @parameterNodeWrapper class in the module file."""
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)
               and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in n.decorator_list)]
    assert len(classes) == 1, "exactly one @parameterNodeWrapper class"
    fields = {}
    for statement in classes[0].body:
        if isinstance(statement, ast.AnnAssign):
            annotation = statement.annotation
            if isinstance(annotation, ast.Subscript):  # Annotated[str, Choice(...)]
                annotation = annotation.slice.elts[0]
            fields[statement.target.id] = ast.unparse(annotation)
    return fields


def _cmake_list(text: str, variable: str) -> list[str]:
    body = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S).group(1)
    return [line.strip().replace("${MODULE_NAME}", "MRImputation") for line in body.splitlines() if line.strip()]


def test_every_ui_widget_the_code_uses_exists_in_the_ui_file():
    names = set(_ui_widgets())
    used = {}
    for path in GLUE_FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
                    and isinstance(node.value.value, ast.Name) and node.value.value.id in ("self", "panel")):
                used.setdefault(node.attr, path.name)
        for name in signal_widgets(path):
            used.setdefault(name, path.name)
    assert used, "the glue uses no ui widget: the check is looking in the wrong place"
    missing = {name: where for name, where in used.items() if name not in names}
    assert not missing, f"used in code but not in {UI_FILE.name}: {missing}"


def test_every_bound_widget_matches_a_parameter_node_field_of_a_fitting_type():
    bound, fields = _bound_parameters(), _parameter_fields()
    assert bound, "no widget is bound with SlicerParameterName"
    names = [name for name, _ in bound]
    assert len(set(names)) == len(names), f"a parameter is bound to two widgets: {sorted(names)}"
    unknown = sorted(set(names) - set(fields))
    assert not unknown, f"SlicerParameterName without a parameter-node field: {unknown} (fields: {sorted(fields)})"
    for name, widget_class in bound:
        assert widget_class in WIDGET_FOR_TYPE[fields[name]], f"{name}: a {fields[name]} cannot bind to {widget_class}"


def test_mrml_widgets_get_the_scene_from_the_module_widget():
    root = ElementTree.parse(UI_FILE).getroot()
    mrml = ("qMRMLNodeComboBox", "qMRMLTableView")
    needs_scene = {w.get("name") for w in root.iter("widget") if w.get("class") in mrml}
    connected = {c.findtext("receiver") for c in root.iter("connection")
                 if (c.findtext("signal"), c.findtext("slot")) == ("mrmlSceneChanged(vtkMRMLScene*)",
                                                                   "setMRMLScene(vtkMRMLScene*)")}
    assert needs_scene and needs_scene <= connected, f"not connected to the scene: {needs_scene - connected}"


def test_every_lib_file_and_resource_is_listed_in_cmake_and_exists():
    text = (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")
    scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    on_disk = ["MRImputation.py"] + sorted(f"MRImputationLib/{p.relative_to(LIB).as_posix()}" for p in _lib_files())
    unlisted, absent = sorted(set(on_disk) - set(scripts)), sorted(set(scripts) - set(on_disk))
    assert not unlisted, f"not packaged with the extension (add to MRImputation/CMakeLists.txt): {unlisted}"
    assert not absent, f"listed in MRImputation/CMakeLists.txt but missing: {absent}"
    resources = _cmake_list(text, "MODULE_PYTHON_RESOURCES")
    files = sorted(str(p.relative_to(MODULE)) for p in (MODULE / "Resources").rglob("*") if p.is_file())
    assert sorted(resources) == files
    assert "WITH_GENERIC_TESTS" in text and "add_subdirectory(Testing/Python)" in text
    registered = (MODULE / "Testing" / "Python" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "slicer_add_python_unittest(SCRIPT" in registered and "${MODULE_NAME}.py" in registered


def test_the_module_file_imports_nothing_heavy_and_does_no_work_at_import():
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            heavy = [n for n in names if n.split(".")[0] not in LIGHT_IMPORTS]
            assert not heavy, f"line {node.lineno}: {heavy} imported at file scope; import it inside the function"
        else:
            docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            assert docstring or isinstance(node, (ast.ClassDef, ast.FunctionDef)), \
                f"line {node.lineno}: statements at file scope run when Slicer loads the module"


def test_the_lib_never_imports_slicer_qt_ctk_or_vtk_at_file_scope():
    offenders = []
    for path in _lib_files():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                offenders += [f"{path.name}:{node.lineno} {n}" for n in names
                              if n.split(".")[0] in ("slicer", "qt", "ctk", "vtk")]
    assert not offenders, offenders


def test_the_module_declares_what_slicer_shows_and_a_self_test():
    text = MODULE_FILE.read_text(encoding="utf-8")
    assert '_("MR Imputation")' in text and '"Image Synthesis"' in text
    for part in ("contributors", "helpText", "acknowledgementText"):
        assert f"self.parent.{part} =" in text
    tree = ast.parse(text)
    bases = {c.name: [ast.unparse(b) for b in c.bases] for c in tree.body if isinstance(c, ast.ClassDef)}
    assert bases["MRImputation"] == ["ScriptedLoadableModule"]
    assert bases["MRImputationWidget"] == ["ScriptedLoadableModuleWidget"]
    assert bases["MRImputationLogic"] == ["ScriptedLoadableModuleLogic"]
    assert bases["MRImputationTest"] == ["ScriptedLoadableModuleTest"]
    assert len(text.splitlines()) < 250, "keep the module file thin: the work belongs in MRImputationLib"


def test_the_ui_file_declares_its_custom_widgets_and_names_each_widget_once():
    root = ElementTree.parse(UI_FILE).getroot()
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "two widgets share a name"
    used = {w.get("class") for w in root.iter("widget")}
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    custom = {c for c in used if c.startswith(("qMRML", "ctk", "qSlicer"))}
    assert custom <= declared, f"declare in <customwidgets>: {custom - declared}"
    assert root.find("widget").get("class") == "qMRMLWidget" and root.findtext("class") == "MRImputation"


def test_the_training_modules_preset_choices_are_the_presets_the_lib_offers():
    """The Slicer parameter node's preset choices (a literal list: the module does not import the Lib at load)
    are the training panel's presets, and each is a training preset of the Lib."""
    from MRImputationLib.slicer.training_decisions import PRESETS
    from MRImputationLib.training.config import TRAIN_PRESETS

    tree = ast.parse((REPO / "MRImputationTraining" / "MRImputationTraining.py").read_text(encoding="utf-8"))
    choices = [ast.literal_eval(call.args[0]) for call in ast.walk(tree)
               if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Choice"]
    assert list(PRESETS) in choices
    assert set(PRESETS) <= set(TRAIN_PRESETS)
