"""The house's rules, read from the code: subpackages are layers, and every import points down.

core < data < preprocessing < models < training | imputation < evaluation < pipelines < cli;
slicer/ sits beside pipelines and reaches them only through the command line (a child process).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

LIB = REPO / "MRImputation" / "MRImputationLib"
LAYERS = {"core": 0, "data": 1, "preprocessing": 2, "models": 3, "training": 4, "imputation": 4,
          "evaluation": 5, "pipelines": 6, "slicer": 6, "cli": 7, "__main__": 8}
TOP_LEVEL_FILES = {"__init__.py", "__main__.py", "cli.py"}
MAX_LINES = 400


def _lib_files() -> list[Path]:
    return sorted(p for p in LIB.rglob("*.py") if "__pycache__" not in p.parts)


def _module(path: Path) -> str:
    return ".".join(path.relative_to(LIB).with_suffix("").parts)


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module inside the Lib) for every import of the Lib in `path`, at any depth."""
    package = _module(path).split(".")[:-1]  # an __init__.py's own package too
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [".".join(base + [a.name]) for a in node.names]
            elif (node.module or "").startswith("MRImputationLib"):
                names = [node.module.removeprefix("MRImputationLib").lstrip(".")]
            else:
                continue
            found += [(node.lineno, n) for n in names if n]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.removeprefix("MRImputationLib.")) for a in node.names
                      if a.name.startswith("MRImputationLib.")]
    return found


def _layer(module: str) -> str:
    return module.split(".")[0]


def test_only_the_command_line_and_package_files_stay_at_the_top():
    top = sorted(p.name for p in LIB.glob("*.py"))
    assert set(top) == TOP_LEVEL_FILES, f"files at the top of the Lib that belong in a subpackage: {set(top) - TOP_LEVEL_FILES}"
    packages = sorted(p.name for p in LIB.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert set(packages) == set(LAYERS) - {"cli", "__main__"}


@pytest.mark.parametrize("path", _lib_files(), ids=lambda p: _module(p))
def test_imports_point_down_the_layers(path):
    own = _layer(_module(path))
    upward = []
    for line, target in _imported_modules(path):
        layer = _layer(target)
        if layer == own or layer not in LAYERS or own not in LAYERS:
            continue
        if LAYERS[layer] >= LAYERS[own]:
            upward.append(f"line {line}: {target} ({layer} is not below {own})")
    assert not upward, f"{path.relative_to(LIB)} imports upward or sideways: {upward}"


def test_a_model_family_is_its_own_subpackage_of_models():
    families = [p for p in (LIB / "models").iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert families and all((f / "__init__.py").is_file() for f in families)
    for family in families:
        for path in sorted(family.rglob("*.py")):
            others = [t for _, t in _imported_modules(path)
                      if t.startswith("models.") and t.split(".")[1] in {f.name for f in families} - {family.name}]
            assert not others, f"{path.relative_to(LIB)}: one model family imports another: {others}"


@pytest.mark.parametrize("path", _lib_files(), ids=lambda p: _module(p))
def test_every_lib_file_is_small_and_says_what_it_is_for(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_LINES, f"{path.relative_to(LIB)}: over {MAX_LINES} lines; split it by concern"
    assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(LIB)}: no docstring saying what the file is for"


@pytest.mark.parametrize("module", ["MRImputation/MRImputation.py", "MRImputationTraining/MRImputationTraining.py"])
def test_reload_in_either_slicer_module_forgets_every_subpackage_of_the_lib(module):
    tree = ast.parse((REPO / module).read_text(encoding="utf-8"))
    reloads = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "onReload"]
    assert reloads, f"{module}: no onReload, so Slicer's Reload keeps the Lib's old modules"
    text = ast.unparse(reloads[0])
    assert "sys.modules" in text and "startswith('MRImputationLib.')" in text, f"{module}: onReload keeps subpackages"
