"""The bodies of the modules' ScriptedLoadableModuleTests (MRImputationTest, MRImputationTrainingTest).

They run only inside Slicer (the panels, the buttons, the scene); each takes the running test case
for its assertions. Each first installs what its path uses and nothing more (no registration, so no
antspyx: dependencies.SELF_TEST_REQUIREMENTS; no question is asked in testing mode), or skips with
the reason. Kept here so the module files stay thin; `slicer` is imported inside the functions.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def require_what_the_test_uses(test) -> None:
    """Install the self-test's packages (no consent asked in testing mode), or skip the test saying why."""
    from .dependencies import ensure_for_self_test

    reason = ensure_for_self_test()
    if reason:
        test.skipTest(f"the self-test's packages are not available: {reason}")


def wait_for(condition, seconds: float) -> bool:
    """Process Qt events until `condition()` or `seconds` have passed; whether it came true."""
    import slicer

    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        slicer.app.processEvents()
        time.sleep(0.05)
    return bool(condition())


def imputation_self_test(test) -> None:
    """Phantom volumes and an untrained tiny model through the Impute button, then the error map (< 1 min)."""
    import slicer

    from . import bridge, self_test_data

    require_what_the_test_uses(test)
    test.delayDisplay("Phantom volumes and an untrained tiny model")
    folder = Path(tempfile.mkdtemp(prefix="MRImputationTest-", dir=slicer.app.temporaryPath))
    bundle = self_test_data.untrained_bundle(folder / "bundle")
    volumes = self_test_data.phantom_volumes()
    inputs = {c: bridge.add_volume_node(v, f"selftest_{c}") for c, v in volumes.items()}

    panel = slicer.modules.mrimputation.widgetRepresentation().self().panel
    card = panel.store.import_bundle(bundle, replace=True)
    try:
        panel.refreshModels(select=card.id)
        test.assertEqual(panel.currentCard().id, card.id)
        test.assertEqual(set(panel.selectors), {"T1", "T2", "PD"})
        panel.selectors["PD"].setCurrentNode(None)  # pre-filled from the names; PD is to be synthesized
        test.assertEqual(panel.ui.scenarioLabel.text, "given T1, T2 → synthesizing PD")
        test.assertTrue(panel.ui.imputeButton.enabled)
        panel.params.n4, panel.params.register, panel.params.selfCheck = False, False, True
        panel.ui.imputeButton.click()
        wait_for(lambda: panel.job is not None and panel.job.finished, 50)
        test.assertTrue(panel.job.ok, panel.job.error or "the imputation did not finish in time")

        synthetic = slicer.util.getNode("PD (synthetic)")
        attributes = bridge.get_attributes(synthetic)
        test.assertEqual((attributes["model"], attributes["scenario"]), (card.name, "110"))
        test.assertIn("SYNTHETIC", synthetic.GetAttribute("DICOM.SeriesDescription"))
        test.assertTrue(bridge.volume_from_node(synthetic).same_grid(volumes["T1"]))
        test.assertIsNotNone(panel.job.outputs.self_check_table)

        test.delayDisplay("Error map against the real PD")
        panel.params.syntheticVolume, panel.params.referenceVolume = synthetic, inputs["PD"]
        panel.ui.computeErrorMapButton.click()
        wait_for(lambda: panel.job.finished, 20)
        test.assertTrue(panel.job.ok, panel.job.error)
        test.assertGreaterEqual(panel.job.outputs.table.GetNumberOfRows(), 3)
        colors = panel.job.outputs.error_node.GetDisplayNode().GetColorNode().GetName()
        test.assertIn(colors, ("Magma", "Inferno", "MRImputation Magma"))
        panel.ui.compareLayoutButton.click()
        test.delayDisplay("Test passed")
    finally:
        panel.store.remove(card)
        panel.refreshModels()


def training_self_test(test, model_store) -> None:
    """Three small preprocessed phantom subjects, one epoch of the tiny preset through the Start button (< 2 min);
    `model_store` is MR Imputation's, where the finished model must appear."""
    import slicer

    from ..data.phantom import PhantomConfig, write_phantom
    from ..preprocessing.folder import preprocess_folder
    from ..preprocessing.subject import PreprocessConfig

    require_what_the_test_uses(test)
    test.delayDisplay("Three phantom subjects, preprocessed")
    folder = Path(tempfile.mkdtemp(prefix="MRImputationTrainingTest-", dir=slicer.app.temporaryPath))
    write_phantom(folder / "raw", 3, PhantomConfig(shape=(48, 48, 32), misalignment="none"), seed=5)
    preprocess_folder(folder / "raw", folder / "pre", PreprocessConfig(n4=False, register=False, qc=False))

    panel = slicer.modules.mrimputationtraining.widgetRepresentation().self().panel
    panel.ui.dataFolderPathLineEdit.currentPath = str(folder / "pre")
    test.assertTrue(wait_for(lambda: not panel.dataFolderBusy(), 30), "the data folder was not read in time")
    test.assertEqual(len(panel.summary.subjects), 3)
    test.assertEqual(set(panel.contrast_boxes), {"T1", "T2", "PD"})
    test.assertEqual(panel.params.outputFolder, str(folder / "pre-training"))  # suggested beside the data
    panel.ui.outputFolderPathLineEdit.currentPath = str(folder / "run")
    panel.params.preset, panel.params.epochs, panel.params.install = "tiny", 1, True
    test.assertTrue(panel.ui.startButton.enabled, panel.ui.statusLabel.text)

    test.delayDisplay("Training one epoch in a child process")
    panel.ui.startButton.click()
    test.assertTrue(panel.ui.stopButton.enabled)
    wait_for(lambda: panel.job is not None and panel.job.finished, 110)
    job = panel.job
    test.assertTrue(job.ok, job.error or "the training did not finish in time")
    installed = job.outputs.installed
    test.assertEqual(panel.plots.table.GetNumberOfRows(), 1)
    test.assertEqual(panel.plots.chart("losses").GetNumberOfPlotSeriesNodes(), 4)
    test.assertTrue((folder / "run" / "evaluation" / "results.md").is_file())
    try:
        imputation = slicer.util.getModuleWidget("MRImputation").panel
        test.assertIn(installed["id"], [card.id for card in imputation.cards])
        test.delayDisplay("Test passed")
    finally:
        for card in model_store.installed():
            if card.id == installed["id"]:
                model_store.remove(card)
