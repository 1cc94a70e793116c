"""What a run and the self-tests require, and how it is installed inside Slicer (a stand-in `slicer`
package with a real `slicer.packaging` submodule: it is imported, never taken as an attribute)."""

from __future__ import annotations

import ast
import sys
import types

import pytest

from conftest import REPO
from MRImputationLib.slicer import dependencies
from MRImputationLib.slicer.dependencies import (CORE, REGISTRATION, REQUIREMENTS, SELF_TEST_REQUIREMENTS,
                                                 DependencyError, Requirement, ensure_for_self_test, requirements_for)

OPTIONAL = {"antspyx", "pandas", "statsmodels", "scikit-learn"}


def _names(requirements) -> set[str]:
    return {r.name for r in requirements}


def test_only_registration_needs_antspyx_and_what_it_loads():
    assert OPTIONAL <= _names(requirements_for(register=True)) == _names(CORE) | _names(REGISTRATION)
    assert not OPTIONAL & _names(requirements_for(register=False))
    assert _names(REQUIREMENTS) == _names(CORE) | _names(REGISTRATION) | {"threadpoolctl"}


def test_the_self_tests_require_what_their_paths_use_and_nothing_else():
    assert not OPTIONAL & _names(SELF_TEST_REQUIREMENTS)
    assert {"torch", "safetensors", "scikit-image", "matplotlib", "threadpoolctl"} <= _names(SELF_TEST_REQUIREMENTS)
    source = (REPO / "MRImputation" / "MRImputationLib" / "slicer" / "self_tests.py").read_text(encoding="utf-8")
    assert "ensure_for_self_test()" in source and "skipTest(" in source
    for module in ("MRImputation/MRImputation.py", "MRImputationTraining/MRImputationTraining.py"):
        tree = ast.parse((REPO / module).read_text(encoding="utf-8"))
        [test] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Test")]
        body = ast.unparse(test)
        assert "self_tests import" in body and "dependencies.missing()" not in body


@pytest.fixture
def fake_slicer(tmp_path, monkeypatch):
    """A `slicer` package whose `packaging` is a submodule (as in Slicer 5.12): not an attribute until imported."""
    folder = tmp_path / "slicer"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "packaging.py").write_text(
        "calls = []\n"
        "def pip_ensure(requirements, constraints=None, skip_packages=None, prompt_install=True, prompt_restart=True,\n"
        "               requester=None, skip_in_testing=True, show_progress=True):\n"
        "    calls.append(dict(requirements=requirements, prompt_install=prompt_install,\n"
        "                      skip_in_testing=skip_in_testing, requester=requester))\n")
    package = types.ModuleType("slicer")
    package.__path__ = [str(folder)]
    package.app = types.SimpleNamespace(testingEnabled=lambda: True)
    pip_install_calls = []
    package.util = types.SimpleNamespace(pip_install=pip_install_calls.append,
                                         confirmOkCancelDisplay=lambda *a: pytest.fail("asked in testing mode"))
    monkeypatch.setitem(sys.modules, "slicer", package)
    monkeypatch.delitem(sys.modules, "slicer.packaging", raising=False)
    assert not hasattr(package, "packaging")
    return package, pip_install_calls


def test_slicer_packaging_is_imported_so_the_first_install_uses_pip_ensure(fake_slicer):
    package, pip_install_calls = fake_slicer
    absent = Requirement("no-such-package-mrimputation", "no_such_module_mrimputation", needed_for="a test")
    with pytest.raises(DependencyError, match="installed but cannot be imported yet"):
        dependencies.ensure_in_slicer([absent], requester="MR Imputation self-test")
    calls = sys.modules["slicer.packaging"].calls
    assert calls == [{"requirements": ["no-such-package-mrimputation"], "prompt_install": False,
                      "skip_in_testing": False, "requester": "MR Imputation self-test"}]
    assert pip_install_calls == [], "pip_ensure exists: no fall back to slicer.util.pip_install"


def test_older_slicer_without_packaging_falls_back_to_pip_install(fake_slicer, monkeypatch):
    package, pip_install_calls = fake_slicer
    monkeypatch.setitem(sys.modules, "slicer.packaging", None)  # `from slicer import packaging` raises ImportError
    assert dependencies.slicer_packaging() is None
    absent = Requirement("no-such-package-mrimputation", "no_such_module_mrimputation")
    with pytest.raises(DependencyError):
        dependencies.ensure_in_slicer([absent])
    assert pip_install_calls and pip_install_calls[0][0] == "no-such-package-mrimputation"


def test_a_self_test_gets_the_reason_to_skip_instead_of_an_error(fake_slicer):
    absent = Requirement("no-such-package-mrimputation", "no_such_module_mrimputation")
    reason = ensure_for_self_test([absent])
    assert "cannot be imported yet" in reason and "no-such-package-mrimputation" in reason
    assert ensure_for_self_test([]) == ""
