"""The GitHub Actions workflow that runs the self-tests in a real Slicer, checked statically (it cannot run
here): it parses, downloads Slicer 5.12 for Linux, installs the PyTorch extension, gives the module paths,
runs both ScriptedLoadableModuleTests under Xvfb in testing mode, and uploads the logs."""

from __future__ import annotations

import ast

import yaml

from conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "slicer-self-tests.yml"
HELPERS = REPO / ".github" / "slicer"


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def _steps() -> list[dict]:
    [job] = _workflow()["jobs"].values()
    return job["steps"]


def _run(name: str) -> str:
    [step] = [s for s in _steps() if s.get("name") == name]
    return step["run"]


def test_the_workflow_parses_and_runs_on_pushes_and_pull_requests():
    workflow = _workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request", "workflow_dispatch"} <= set(triggers)
    [job] = workflow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu") and job["timeout-minutes"] <= 90
    assert job["defaults"]["run"]["shell"] == "bash", "bash -eo pipefail: `| tee` must not hide a failure"


def test_it_downloads_slicer_5_12_for_linux_and_checks_what_it_got():
    [job] = _workflow()["jobs"].values()
    assert str(job["env"]["SLICER_VERSION"]) == "5.12"
    download = next(s["run"] for s in _steps() if "Download Slicer" in s.get("name", ""))
    assert "download.slicer.org/find?os=linux&stability=release&version=${SLICER_VERSION}" in download
    assert "sha512sum -c" in download and "SLICER=" in download


def test_it_installs_the_pytorch_extension_and_passes_the_module_paths():
    install = next(s["run"] for s in _steps() if "PyTorch extension" in s.get("name", ""))
    assert "install_pytorch_extension.py" in install and "install_torch.py" in install
    assert "PYTORCH_MODULE_PATHS=" in install
    for path in ("install_pytorch_extension.py", "install_torch.py"):
        source = (HELPERS / path).read_text(encoding="utf-8")
        ast.parse(source)
        assert "slicer.util.exit(" in source
    assert 'installExtensionFromServer("PyTorch", False)' in (HELPERS / "install_pytorch_extension.py").read_text()
    assert "installTorch(" in (HELPERS / "install_torch.py").read_text()


def test_both_self_tests_run_in_testing_mode_under_xvfb_with_every_module_path():
    for module in ("MRImputation", "MRImputationTraining"):
        run = _run(f"{module}Test")
        assert run.lstrip().startswith("xvfb-run") and "--testing" in run and "--no-splash" in run
        assert '--additional-module-paths "$PWD/MRImputation" "$PWD/MRImputationTraining" $PYTORCH_MODULE_PATHS' in run
        assert f"slicer.testing.runUnitTest(['$PWD/{module}'], '{module}')" in run
        assert f"tee logs/{module}Test.log" in run
        assert (REPO / module / f"{module}.py").read_text(encoding="utf-8").count(f"class {module}Test(") == 1


def test_the_logs_are_uploaded_whatever_happened():
    [upload] = [s for s in _steps() if "upload-artifact" in s.get("uses", "")]
    assert upload["if"].strip("${} ") == "always()" and upload["with"]["path"] == "logs/"


def test_the_readme_says_the_workflow_has_not_run_here():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert ".github/workflows/slicer-self-tests.yml" in readme and "cannot run on these machines" in readme
