"""Run by Slicer (--python-script, outside testing mode): install the PyTorch extension from the extensions
server, as a user does in the Extensions Manager, and write its module paths, one per line, to the file
named by the first argument. Testing mode (--testing) uses throw-away settings that do not list installed
extensions, so the test steps pass these paths with --additional-module-paths."""

import sys

import slicer

manager = slicer.app.extensionsManagerModel()
manager.interactive = False
installed = manager.isExtensionInstalled("PyTorch") or manager.installExtensionFromServer("PyTorch", False)
paths = list(manager.extensionModulePaths("PyTorch")) if installed else []
with open(sys.argv[1], "w", encoding="utf-8") as listing:
    listing.write("\n".join(paths) + "\n")
print(f"PyTorch extension installed: {installed}; module paths: {paths}")
slicer.util.exit(0 if installed and paths else 1)
