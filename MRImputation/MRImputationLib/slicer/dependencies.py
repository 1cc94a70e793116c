"""What the imputation needs inside Slicer, what is missing, and how it gets installed (after asking).

Rules (SLICER.md): torch only through the PyTorch extension (PyTorchUtils, which picks the build
that matches the GPU driver); the other packages when first needed, after the user agreed, with
`slicer.packaging.pip_ensure` (Slicer 5.12; `slicer.packaging` is a submodule and is imported here)
or `slicer.util.pip_install` (older); never replace the packages Slicer ships (numpy, scipy,
SimpleITK): every pip call carries a constraints file pinning their installed versions. antspyx pins
an old scipy, so it is installed with --no-deps, then the packages `import ants` really loads.

Only what a run uses is required (`requirements_for`): antspyx and its needs only when inputs are
registered. The self-tests require what their paths use (`SELF_TEST_REQUIREMENTS`), installed without
asking in testing mode, or the test is skipped with the reason (`ensure_for_self_test`).

The planning functions are pure (tested with pytest); `ensure_in_slicer` makes the Slicer calls.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from ..core.errors import InputError


class DependencyError(InputError):
    """A dependency is missing and could not be installed; the message says what to do."""


@dataclass(frozen=True)
class Requirement:
    """A package the imputation needs: pip `name`, `module` to import, version `spec`, and how it is got."""

    name: str
    module: str
    spec: str = ""
    needed_for: str = ""
    source: str = "pip"  # "pip", "pytorch-extension", or "slicer" (bundled with Slicer, never installed)
    no_deps: bool = False

    @property
    def pip_spec(self) -> str:
        return f"{self.name}{self.spec}"


SLICER_BUNDLED = (
    Requirement("numpy", "numpy", source="slicer", needed_for="arrays"),
    Requirement("scipy", "scipy", source="slicer", needed_for="resampling and filters"),
    Requirement("SimpleITK", "SimpleITK", source="slicer", needed_for="reading and writing volumes"),
)
TORCH = Requirement("torch", "torch", ">=2.1", "running the model", source="pytorch-extension")
ANTSPYX = Requirement("antspyx", "ants", ">=0.5", "registering the inputs onto the reference contrast", no_deps=True)
# What `import ants` loads besides numpy/scipy (antspyx's declared pins would replace Slicer's scipy).
ANTSPYX_REAL_NEEDS = (
    Requirement("pandas", "pandas", needed_for="antspyx"),
    Requirement("statsmodels", "statsmodels", needed_for="antspyx"),
    Requirement("scikit-learn", "sklearn", needed_for="antspyx"),
    Requirement("Pillow", "PIL", needed_for="antspyx"),
    Requirement("requests", "requests", needed_for="antspyx"),
)
THREADPOOLCTL = Requirement("threadpoolctl", "threadpoolctl", needed_for="the built-in phantom (self-test)")
CORE = (  # every imputation and training run, registration or not
    *SLICER_BUNDLED,
    TORCH,
    Requirement("safetensors", "safetensors", ">=0.4", "reading model weights"),
    Requirement("scikit-image", "skimage", ">=0.22", "brain mask and SSIM"),
    Requirement("matplotlib", "matplotlib", ">=3.7", "error-map pictures"),
)
REGISTRATION = (ANTSPYX, *ANTSPYX_REAL_NEEDS)
REQUIREMENTS = (*CORE, THREADPOOLCTL, *REGISTRATION)  # everything any feature uses
# The self-tests run a phantom through imputation (no registration) and training on preprocessed data.
SELF_TEST_REQUIREMENTS = (*CORE, THREADPOOLCTL)


def requirements_for(register: bool = True) -> tuple[Requirement, ...]:
    """What a run needs: the core packages, and antspyx with what it loads only when inputs are registered.

    >>> [r.name for r in requirements_for(register=False)][-2:]
    ['scikit-image', 'matplotlib']
    """
    return (*CORE, *REGISTRATION) if register else CORE


def module_available(module: str) -> bool:
    """True when `module` can be imported (found on the path; nothing is imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing(requirements: Iterable[Requirement] = REQUIREMENTS,
            available: Callable[[str], bool] = module_available) -> list[Requirement]:
    """The requirements whose module cannot be imported.

    >>> [r.name for r in missing(REQUIREMENTS, lambda module: module != "ants")]
    ['antspyx']
    """
    return [r for r in requirements if not available(r.module)]


@dataclass
class InstallPlan:
    """What to do about the missing packages, in order: torch, --no-deps packages, the others."""

    torch: bool = False
    no_deps: list[str] = field(default_factory=list)
    pip: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # Slicer's own packages that are missing
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.torch or self.no_deps or self.pip or self.broken)

    def question(self) -> str:
        """The consent question listing the pip packages and what each is for."""
        names = [*self.no_deps, *self.pip]
        lines = [f"- {n}: {self.reasons.get(n, '')}".rstrip(": ") for n in names]
        return ("MR Imputation needs these Python packages, which are not installed yet:\n" + "\n".join(lines) +
                "\n\nThey are downloaded with pip into Slicer's Python (a few minutes; Slicer's own numpy, scipy and "
                "SimpleITK are kept as they are). Install them now?")

    def constraints_text(self) -> str:
        return "".join(f"{line}\n" for line in self.constraints)


def install_plan(needed: Iterable[Requirement], versions: Mapping[str, str | None] | None = None) -> InstallPlan:
    """Turn missing requirements into an ordered plan that never touches Slicer's bundled packages.

    >>> plan = install_plan([TORCH, ANTSPYX, *ANTSPYX_REAL_NEEDS[:1]], {"numpy": "1.26.4", "scipy": None})
    >>> plan.torch, plan.no_deps, plan.pip, plan.constraints
    (True, ['antspyx>=0.5'], ['pandas'], ['numpy==1.26.4'])
    """
    if versions is None:
        versions = {r.name: installed_version(r.name) for r in SLICER_BUNDLED}
    plan = InstallPlan(constraints=[f"{name}=={version}" for name, version in versions.items() if version])
    for requirement in needed:
        plan.reasons[requirement.pip_spec] = requirement.needed_for
        if requirement.source == "slicer":
            plan.broken.append(requirement.name)
        elif requirement.source == "pytorch-extension":
            plan.torch = True
        elif requirement.no_deps:
            plan.no_deps.append(requirement.pip_spec)
        else:
            plan.pip.append(requirement.pip_spec)
    return plan


def status_text(requirements: Iterable[Requirement] = REQUIREMENTS,
                available: Callable[[str], bool] = module_available) -> str:
    """'All dependencies are installed.' or which are missing (for the panel's tooltip and log)."""
    absent = missing(requirements, available)
    if not absent:
        return "All dependencies are installed."
    return "Not installed yet (installed on first use, after asking): " + ", ".join(r.name for r in absent) + "."


def ensure_in_slicer(requirements: Iterable[Requirement] = REQUIREMENTS, requester: str = "MR Imputation",
                     confirm: Callable[[str], bool] | None = None) -> None:
    """Inside Slicer: install what is missing (torch via PyTorchUtils, the rest via pip) after asking.

    Raises DependencyError with what to do when something is refused, fails, or needs a restart.
    """
    import slicer

    plan = install_plan(missing(requirements))
    if plan.empty:
        return
    if plan.broken:
        raise DependencyError(f"Slicer's own {', '.join(plan.broken)} cannot be imported; MR Imputation does not "
                              "replace them. Reinstall Slicer (or remove what replaced them with pip).")
    if plan.torch:
        _install_torch()
    if plan.no_deps or plan.pip:
        ask = confirm or (lambda text: slicer.util.confirmOkCancelDisplay(text, requester))
        if not testing_mode() and not ask(plan.question()):
            raise DependencyError("The packages were not installed, so the imputation cannot run. Click again to be "
                                  f"asked again, or install by hand in the Python console: "
                                  f"slicer.util.pip_install({[*plan.no_deps, *plan.pip]!r})")
        _pip_install(plan, requester)
    still = [r.name for r in missing(requirements)]
    if still:
        raise DependencyError(f"{', '.join(still)} installed but cannot be imported yet: restart Slicer, then retry.")


def ensure_for_self_test(requirements: Iterable[Requirement] = SELF_TEST_REQUIREMENTS,
                         requester: str = "MR Imputation self-test") -> str:
    """Inside Slicer's self-tests: install what the test's path uses (no question in testing mode).
    "" when everything is there, else why not: the test skips with that reason."""
    try:
        ensure_in_slicer(requirements, requester)
    except DependencyError as error:
        return f"{error} (needed: {', '.join(r.name for r in missing(requirements)) or 'see above'})"
    return ""


def testing_mode() -> bool:
    """True inside Slicer started with --testing (self-tests): nobody is there to answer a question."""
    import slicer

    app = getattr(slicer, "app", None)
    return bool(app is not None and app.testingEnabled())


def slicer_packaging():
    """`slicer.packaging` with `pip_ensure` (Slicer 5.12 and later), or None (older Slicer). It is a
    submodule: `slicer.packaging` is not an attribute of `slicer` until it has been imported."""
    try:
        from slicer import packaging
    except ImportError:
        return None
    return packaging if hasattr(packaging, "pip_ensure") else None


def _install_torch() -> None:
    try:
        import PyTorchUtils
    except ImportError:
        raise DependencyError("PyTorch is needed and comes from the 'PyTorch' extension: install it in the "
                              "Extensions Manager, restart Slicer, then click again.") from None
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True)
    if torch is None:
        raise DependencyError("PyTorch was not installed, so the model cannot run. Install it in the 'PyTorch Utils' "
                              "module (choose the computation backend there if the automatic choice failed).")


def _pip_install(plan: InstallPlan, requester: str) -> None:
    import slicer

    with tempfile.TemporaryDirectory(prefix="MRImputation-pip-") as folder:
        constraints = Path(folder) / "constraints.txt"  # Slicer's numpy/scipy/SimpleITK stay as they are
        constraints.write_text(plan.constraints_text(), encoding="utf-8")
        packaging = slicer_packaging()
        try:
            if plan.no_deps:
                slicer.util.pip_install([*plan.no_deps, "--no-deps", "-c", str(constraints)])
            if plan.pip and packaging is not None:
                options = {"constraints": str(constraints), "prompt_install": False, "requester": requester}
                if "skip_in_testing" in inspect.signature(packaging.pip_ensure).parameters:
                    options["skip_in_testing"] = False  # the self-tests install what they use
                packaging.pip_ensure(plan.pip, **options)
            elif plan.pip:
                slicer.util.pip_install([*plan.pip, "-c", str(constraints)])
        except subprocess.CalledProcessError as error:
            raise DependencyError(
                f"pip could not install {', '.join([*plan.no_deps, *plan.pip])} (exit code {error.returncode}). "
                "Check the internet connection or proxy settings (HTTPS_PROXY), then retry; the full pip output is "
                "in the Python console and the application log.") from None
        except RuntimeError as error:  # pip_ensure raises RuntimeError when the user declines
            raise DependencyError(f"The installation was stopped ({error}); the imputation cannot run without "
                                  "these packages.") from None

