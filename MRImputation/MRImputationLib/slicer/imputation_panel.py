"""The "Impute missing modalities" panel: Qt glue between Resources/UI/MRImputation.ui and the logic.

Runs only inside Slicer (it drives Qt widgets); qt and slicer are imported when the panel is built,
so this file loads anywhere. Decisions (what a selection means, commands, node names) live in
impute_logic.py, the work in slicer_logic.py; here are only widgets, timers and dialogs. Long work
never runs on the GUI thread: imputation, comparison and device detection are child processes,
downloads a thread; a QTimer polls them.
"""

from __future__ import annotations

import time

from .imputation_decisions import ImputationOptions, describe_devices, prefill, selection_state
from ..core.contrasts import ContrastSet

POLL_MS = 200
INPUT_ROLE = "MRImputation.input."


class ImputationPanel:
    """Connects the .ui widgets (`ui`, from childWidgetVariables) to `logic` (the module's MRImputationLogic)."""

    def __init__(self, ui, logic, parameter_node_wrapper) -> None:
        import qt

        self.ui = ui
        self.logic = logic
        self.store = logic.modelStore()
        self.params = None
        self._gui_tag = None
        self._observer = None
        self.cards: list = []
        self.selectors: dict = {}
        self.job = None
        self.download = None
        self.error_node = None
        self.device_info = None
        self.started = time.monotonic()
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self._device_probe = None

        ui.modelComboBox.currentIndexChanged.connect(self.onModelChanged)
        ui.downloadModelButton.clicked.connect(self.onDownload)
        ui.importModelButton.clicked.connect(self.onImport)
        ui.openModelsFolderButton.clicked.connect(self.onOpenFolder)
        ui.clearModelsFolderButton.clicked.connect(self.onClearFolder)
        ui.imputeButton.clicked.connect(self.onImpute)
        ui.cancelButton.clicked.connect(self.onCancel)
        ui.computeErrorMapButton.clicked.connect(self.onComputeErrorMap)
        ui.compareLayoutButton.clicked.connect(self.onCompareLayout)
        ui.progressBar.setRange(0, 1000)
        self.setParameterNode(parameter_node_wrapper)
        self.refreshModels()
        self.startDeviceProbe()

    # parameter node ----------------------------------------------------------------------------
    def setParameterNode(self, wrapper) -> None:
        import vtk

        if self.params is not None:
            self.params.disconnectGui(self._gui_tag)
            self.params.parameterNode.RemoveObserver(self._observer)
        self.params = wrapper
        if wrapper is not None:
            self._gui_tag = wrapper.connectGui(self.ui)
            self._observer = wrapper.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, self.updateState)
            self.updateState()

    def enter(self) -> None:
        """The module was opened: offer volumes loaded meanwhile if no input is chosen yet."""
        if not self.selectedInputs():
            self.rebuildSelectors(self.currentCard())
        self.updateState()

    def cleanup(self) -> None:
        """Stop everything that runs: the job's process tree, timers, observers."""
        if self.job is not None and not self.job.finished:
            self.job.cancel()
            self.job.wait()
        self.timer.stop()
        self.setParameterNode(None)

    # models --------------------------------------------------------------------------------------
    def currentCard(self):
        index = self.ui.modelComboBox.currentIndex
        return self.cards[index] if 0 <= index < len(self.cards) else None

    def refreshModels(self, select: str | None = None) -> None:
        import slicer

        try:
            self.cards = self.store.cards()
        except Exception as error:  # noqa: BLE001 - a broken catalogue must not break the panel
            self.cards = self.store.installed()
            slicer.util.errorDisplay(f"The model catalogue could not be read: {error}")
        wanted = select or (self.params.modelId if self.params else "")
        combo = self.ui.modelComboBox
        combo.blockSignals(True)
        combo.clear()
        for card in self.cards:
            combo.addItem(card.label())
        ids = [c.id for c in self.cards]
        combo.setCurrentIndex(ids.index(wanted) if wanted in ids else (0 if ids else -1))
        combo.blockSignals(False)
        if not self.cards:
            combo.addItem("No model installed: import one or train one (MR Imputation Training)")
            combo.setCurrentIndex(0)
        self.onModelChanged()

    def onModelChanged(self, *_) -> None:
        card = self.currentCard()
        if self.params is not None and card is not None and self.params.modelId != card.id:
            self.params.modelId = card.id
        self.ui.modelCardBrowser.setHtml(card.to_html() if card else
                                         "<p>No model yet. <b>Import model…</b> reads a bundle folder or .zip.</p>")
        self.ui.downloadModelButton.setEnabled(card is not None and not card.installed)
        self.rebuildSelectors(card)
        self.updateState()

    def onDownload(self) -> None:
        import slicer

        from .background import BackgroundTask

        card = self.currentCard()
        if card is None or card.installed or self.download is not None:
            return
        if not slicer.util.confirmOkCancelDisplay(card.entry.consent_question(), "Download model"):
            return
        # The user agreed just now, so the store's own consent callback answers yes.
        self.download = BackgroundTask(lambda report: self.store.download(card.entry, lambda entry: True, report),
                                       "MRImputation download").start()
        self.setRunning(True, f"Downloading {card.name} {card.version}…")
        self.timer.start()

    def onImport(self) -> None:
        import qt
        import slicer

        path = qt.QFileDialog.getOpenFileName(None, "Import model bundle (its .zip, or bundle.json in its folder)", "",
                                              "Model bundles (*.zip bundle.json)")
        if not path:
            return
        source = path[: -len("bundle.json")] if path.endswith("bundle.json") else path
        with slicer.util.tryWithErrorDisplay("The model could not be imported.", waitCursor=True):
            card = self.store.import_bundle(source)
            self.refreshModels(select=card.id)

    def onOpenFolder(self) -> None:
        import qt

        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(self.store.ensure_folder())))

    def onClearFolder(self) -> None:
        import slicer

        installed = self.store.installed()
        if not installed:
            slicer.util.infoDisplay(f"No model is installed in {self.store.folder}.")
            return
        names = ", ".join(f"{c.name} {c.version}" for c in installed)
        if slicer.util.confirmOkCancelDisplay(f"Remove every installed model ({names}) from {self.store.folder}?"):
            self.store.clear()
            self.refreshModels()

    # inputs ------------------------------------------------------------------------------------
    def rebuildSelectors(self, card) -> None:
        import slicer

        layout = self.ui.inputsFrame.layout()
        while layout.rowCount():
            layout.removeRow(0)
        self.selectors = {}
        if card is None:
            return
        stored = self.storedInputs(card.contrasts)
        names, outputs = self.volumeNames()
        guessed = prefill(card.contrasts, names, skip=outputs)
        for contrast in card.contrasts:
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
            selector.showChildNodeTypes = False
            selector.noneEnabled = True
            selector.addEnabled = False
            selector.removeEnabled = False
            selector.renameEnabled = False
            selector.noneDisplay = "(not available)"
            selector.setMRMLScene(slicer.mrmlScene)
            selector.setToolTip(f"The patient's {contrast} volume, or none if it is missing and should be synthesized.")
            node = stored.get(contrast)
            if node is None and contrast in guessed:
                node = slicer.mrmlScene.GetFirstNodeByName(guessed[contrast])
            selector.setCurrentNode(node)
            selector.connect("currentNodeChanged(vtkMRMLNode*)", lambda node, c=contrast: self.onInputChanged(c, node))
            layout.addRow(f"{contrast}:", selector)
            self.selectors[contrast] = selector
            self.onInputChanged(contrast, node)

    def volumeNodes(self) -> list:
        import slicer

        return list(slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"))

    def volumeNames(self) -> tuple[list[str], list[str]]:
        """Names of the scene's volumes, and of those that are our own outputs (never pre-filled)."""
        nodes = self.volumeNodes()
        outputs = [n.GetName() for n in nodes if n.GetAttribute("MRImputation.kind")]
        return [n.GetName() for n in nodes if n.IsA("vtkMRMLScalarVolumeNode")
                and not n.IsA("vtkMRMLLabelMapVolumeNode")], outputs

    def storedInputs(self, contrasts) -> dict:
        """The volumes chosen earlier for these contrasts (saved in the parameter node with the scene)."""
        if self.params is None:
            return {}
        node = self.params.parameterNode
        found = {c: node.GetNodeReference(INPUT_ROLE + c) for c in contrasts}
        return {c: n for c, n in found.items() if n is not None}

    def onInputChanged(self, contrast: str, node) -> None:
        if self.params is not None:
            self.params.parameterNode.SetNodeReferenceID(INPUT_ROLE + contrast, node.GetID() if node else None)
        self.updateState()

    def selectedInputs(self) -> dict:
        return {c: s.currentNode() for c, s in self.selectors.items() if s.currentNode() is not None}

    def updateState(self, *_) -> None:
        card = self.currentCard()
        contrasts = ContrastSet(tuple(card.contrasts), card.reference) if card else None
        state = selection_state(contrasts, self.selectedInputs(), card.scenarios if card else None)
        if card is not None and not card.installed and state.valid:
            state = type(state)(False, f"{card.name} is not installed yet: click Download… (you will be asked first).",
                                state.statement, state.scenario)
        self.ui.scenarioLabel.setText(state.statement if state.valid else state.reason)
        running = self.job is not None and not self.job.finished or self.download is not None
        self.ui.imputeButton.setEnabled(state.valid and not running)
        self.ui.imputeButton.setToolTip(state.statement if state.valid else state.reason)
        if card is not None:
            given = card.reference in self.selectedInputs()
            self.ui.registrationLabel.setText(
                f"onto {card.reference}, the model's reference contrast" if given else
                f"onto the finest input grid ({card.reference}, the model's reference, is not given)")
        self.ui.deviceInfoLabel.setText(describe_devices(self.device_info))

    # running -----------------------------------------------------------------------------------
    def options(self) -> ImputationOptions:
        p = self.params
        return ImputationOptions(n4=p.n4, register=p.register, device=p.device, precision=p.precision,
                                 uncertainty=p.uncertaintySamples, self_check=p.selfCheck)

    def onImpute(self) -> None:
        import slicer

        from .dependencies import DependencyError, ensure_in_slicer

        card = self.currentCard()
        try:
            ensure_in_slicer()
        except DependencyError as error:
            slicer.util.errorDisplay(str(error), windowTitle="MR Imputation")
            return
        self.ui.logTextEdit.clear()
        self.started = time.monotonic()
        with slicer.util.tryWithErrorDisplay("The imputation could not start.", waitCursor=True):
            self.job = self.logic.startImpute(self.selectedInputs(), card, self.options(), on_progress=self.onProgress,
                                              on_log=self.onLog, on_finished=self.onImputeFinished)
            self.setRunning(True, "Starting…")
            self.timer.start()

    def onCancel(self) -> None:
        if self.job is not None and not self.job.finished:
            self.job.cancel()
            self.ui.statusLabel.setText("Cancelling: stopping the process and everything it started…")

    def poll(self) -> None:
        if self.job is not None and not self.job.finished:
            self.job.poll()
        if self.download is not None:
            self.pollDownload()
        if self._device_probe is not None and self._device_probe.poll() is not None:
            self._device_probe = None
            self.updateState()
        busy = (self.job is not None and not self.job.finished) or self.download or self._device_probe
        if not busy:
            self.timer.stop()

    def pollDownload(self) -> None:
        import slicer

        task = self.download
        fraction, message = task.progress
        self.ui.progressBar.setValue(int(fraction * 1000))
        self.ui.statusLabel.setText(message)
        if not task.finished:
            return
        self.download = None
        self.setRunning(False, "")
        if task.error is not None:
            self.ui.statusLabel.setText("Download failed.")
            slicer.util.errorDisplay(f"The download failed: {task.error}", windowTitle="MR Imputation")
        else:
            self.ui.statusLabel.setText(f"Installed {task.result.name} {task.result.version} (SHA-256 checked).")
            self.refreshModels(select=task.result.id)

    def onProgress(self, event) -> None:
        self.ui.progressBar.setValue(int(event.fraction * 1000))
        self.ui.statusLabel.setText(event.describe())

    def onLog(self, event) -> None:
        self.ui.logTextEdit.appendPlainText(event.message)

    def setRunning(self, running: bool, status: str) -> None:
        self.ui.cancelButton.setEnabled(running and self.job is not None and not self.job.finished)
        for widget in (self.ui.modelComboBox, self.ui.importModelButton, self.ui.clearModelsFolderButton,
                       self.ui.downloadModelButton):
            widget.setEnabled(not running)
        if running:
            self.ui.progressBar.setValue(0)
        self.ui.statusLabel.setText(status)
        self.updateState()

    def onImputeFinished(self, job) -> None:
        import slicer

        from .process import format_duration
        from .views import show_overlay

        self.setRunning(False, "")
        self.ui.cancelButton.setEnabled(False)
        if job.cancelled:
            self.ui.statusLabel.setText("Cancelled; nothing was added to the scene.")
            self.ui.progressBar.setValue(0)
            return
        if job.error:
            self.ui.statusLabel.setText("Failed: see the message.")
            slicer.util.errorDisplay(f"The imputation failed: {job.error}", windowTitle="MR Imputation")
            return
        self.ui.progressBar.setValue(1000)
        names = ", ".join(n.GetName() for n in job.nodes)
        self.ui.statusLabel.setText(f"Done in {format_duration(time.monotonic() - self.started)}: {names}.")
        synthetic = job.synthetic_nodes
        if synthetic:
            show_overlay(synthetic[0])
            self.params.syntheticVolume = synthetic[0]
        if job.self_check_table is not None:
            self.ui.selfCheckTableView.setMRMLTableNode(job.self_check_table)

    def startDeviceProbe(self) -> None:
        from .imputation_logic import start_device_probe

        try:
            self._device_probe = start_device_probe(lambda info: setattr(self, "device_info", info))
        except Exception as error:  # noqa: BLE001 - the line says so; auto still decides at run time
            self.ui.deviceInfoLabel.setText(f"Devices could not be detected ({error}); auto decides at run time.")
            return
        self.timer.start()

    # inspect -----------------------------------------------------------------------------------
    def onComputeErrorMap(self) -> None:
        import slicer

        with slicer.util.tryWithErrorDisplay("The error map could not be computed.", waitCursor=True):
            self.job = self.logic.startCompare(self.params.syntheticVolume, self.params.referenceVolume,
                                               on_progress=self.onProgress, on_log=self.onLog,
                                               on_finished=self.onCompareFinished)
            self.started = time.monotonic()
            self.setRunning(True, "Comparing…")
            self.timer.start()

    def onCompareFinished(self, job) -> None:
        import slicer

        from .bridge import get_attributes
        from .views import show_overlay

        self.setRunning(False, "")
        if job.error:
            slicer.util.errorDisplay(f"The comparison failed: {job.error}", windowTitle="MR Imputation")
            return
        self.error_node = job.error_node
        self.ui.metricsTableView.setMRMLTableNode(job.table)
        show_overlay(job.real, job.error_node)
        m = job.metrics
        self.ui.statusLabel.setText(f"PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, MAE {m['mae']:.4f} inside the brain.")
        table_id = get_attributes(job.synthetic).get("selfCheckTable")
        table = slicer.mrmlScene.GetNodeByID(table_id) if table_id else None
        if table is not None:
            self.ui.selfCheckTableView.setMRMLTableNode(table)

    def onCompareLayout(self) -> None:
        import slicer

        from .views import show_comparison

        p = self.params
        if p.referenceVolume is None or p.syntheticVolume is None or self.error_node is None:
            slicer.util.infoDisplay("Compute the error map first (pick a synthetic and a real volume).")
            return
        show_comparison(p.referenceVolume, p.syntheticVolume, self.error_node)
