"""Run by Slicer (--python-script, outside testing mode, after install_pytorch_extension.py): install the
CPU build of PyTorch through the PyTorch extension (PyTorchUtils), the only way MR Imputation gets torch."""

import slicer

import PyTorchUtils

torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, forceComputationBackend="cpu")
print(f"torch: {getattr(torch, '__version__', None)}")
slicer.util.exit(0 if torch is not None else 1)
