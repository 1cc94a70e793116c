"""The "Impute missing modalities" panel: Qt glue between Resources/UI/MRImputation.ui and the logic.

Runs only inside Slicer (it drives Qt widgets); qt and slicer are imported when the panel is built,
so this file loads anywhere. Decisions (what a selection means, commands, node names) live in
imputation_decisions.py, the work in imputation_logic.py, the glue both panels share in
panel_base.py; here are only this panel's widgets and dialogs. Long work never runs on the GUI
thread: imputation, comparison and device detection are child processes, downloads a thread; a
QTimer polls them.
"""

from __future__ import annotations

from ..core.contrasts import ContrastSet
from .imputation_decisions import ImputationOptions, preselected_model, prefill, selection_state
from .panel_base import PanelBase

INPUT_ROLE = "MRImputation.input."


class ImputationPanel(PanelBase):
    """Connects the .ui widgets (`ui`, from childWidgetVariables) to `logic` (the module's MRImputationLogic)."""

    TITLE = "MR Imputation"
    SIGNALS = {
        "modelComboBox.currentIndexChanged": "onModelChanged", "downloadModelButton.clicked": "onDownload",
        "importModelButton.clicked": "onImport", "openModelsFolderButton.clicked": "onOpenFolder",
        "clearModelsFolderButton.clicked": "onClearFolder", "imputeButton.clicked": "onImpute",
        "cancelButton.clicked": "onCancel", "computeErrorMapButton.clicked": "onComputeErrorMap",
        "compareLayoutButton.clicked": "onCompareLayout",
    }

    def __init__(self, ui, logic, parameter_node_wrapper) -> None:
        self.store = logic.modelStore()
        self.cards: list = []
        self.selectors: dict = {}
        self.download = None
        self.error_node = None
        super().__init__(ui, logic)
        self.setParameterNode(parameter_node_wrapper)
        self.refreshModels()
        self.startDeviceProbe()

    def enter(self) -> None:
        """The module was opened: offer volumes loaded meanwhile (and the built-in model they suit) if no input
        is chosen yet."""
        if not self.selectedInputs():
            preferred = self.preferredModel()
            if preferred and preferred != getattr(self.currentCard(), "id", None):
                self.refreshModels(select=preferred)  # rebuilds the selectors for it
            else:
                self.rebuildSelectors(self.currentCard())
        self.updateState()

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
        wanted = select or (self.params.modelId if self.params else "") or self.preferredModel() or ""
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

    def preferredModel(self) -> str | None:
        """The built-in model whose contrasts the loaded volumes match (imputation_decisions.preselected_model)."""
        names, outputs = self.volumeNames()
        return preselected_model(self.cards, names, self.params.modelId if self.params else None, skip=outputs)

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
        self.ui.imputeButton.setEnabled(state.valid and not (self.running or self.download is not None))
        self.ui.imputeButton.setToolTip(state.statement if state.valid else state.reason)
        if card is not None:
            given = card.reference in self.selectedInputs()
            self.ui.registrationLabel.setText(
                f"onto {card.reference}, the model's reference contrast" if given else
                f"onto the finest input grid ({card.reference}, the model's reference, is not given)")
        self.ui.deviceInfoLabel.setText(self.deviceLine())

    # running -----------------------------------------------------------------------------------
    def options(self) -> ImputationOptions:
        p = self.params
        return ImputationOptions(n4=p.n4, register=p.register, device=p.device, precision=p.precision,
                                 uncertainty=p.uncertaintySamples, self_check=p.selfCheck)

    def onImpute(self) -> None:
        from .dependencies import requirements_for

        card = self.currentCard()
        if not self.ensureDependencies(requirements_for(register=self.params.register)):  # antspyx only to register
            return
        self.ui.logTextEdit.clear()
        self.startJob(lambda: self.logic.startImpute(self.selectedInputs(), card, self.options(),
                                                     on_progress=self.onProgress, on_log=self.onLog,
                                                     on_finished=self.onImputeFinished),
                      "The imputation could not start.", "Starting…")

    def onCancel(self) -> None:
        self.cancelJob("Cancelling: stopping the process and everything it started…")

    def busy(self) -> bool:
        return super().busy() or self.download is not None

    def cleanupMore(self) -> None:
        self.download = None  # a download thread cannot be stopped: it ends on its own, resumable next time

    def pollMore(self) -> None:
        """Follow the model download (a thread, not a child process)."""
        if self.download is None:
            return
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
            self.showError(f"The download failed: {task.error}")
        else:
            self.ui.statusLabel.setText(f"Installed {task.result.name} {task.result.version} (SHA-256 checked).")
            self.refreshModels(select=task.result.id)

    def onProgress(self, event) -> None:
        super().onProgress(event)
        self.ui.statusLabel.setText(event.describe())

    def setRunning(self, running: bool, status: str = "") -> None:
        self.ui.cancelButton.setEnabled(running and self.running)
        for widget in (self.ui.modelComboBox, self.ui.importModelButton, self.ui.clearModelsFolderButton):
            widget.setEnabled(not running)
        card = self.currentCard()  # Download only for a model that is not installed yet
        self.ui.downloadModelButton.setEnabled(not running and card is not None and not card.installed)
        if running:
            self.ui.progressBar.setValue(0)
        self.ui.statusLabel.setText(status)
        self.updateState()

    def onImputeFinished(self, job) -> None:
        from .views import show_overlay

        self.setRunning(False, "")
        self.ui.cancelButton.setEnabled(False)
        if not self.succeeded(job, "Cancelled; nothing was added to the scene.", "Failed: see the message.",
                              "The imputation"):
            return
        outputs = job.outputs
        names = ", ".join(n.GetName() for n in outputs.nodes)
        self.ui.statusLabel.setText(f"Done in {self.elapsed()}: {names}.")
        synthetic = outputs.synthetic_nodes
        if synthetic:
            show_overlay(synthetic[0])
            self.params.syntheticVolume = synthetic[0]
        if outputs.self_check_table is not None:
            self.ui.selfCheckTableView.setMRMLTableNode(outputs.self_check_table)

    # inspect -----------------------------------------------------------------------------------
    def onComputeErrorMap(self) -> None:
        self.startJob(lambda: self.logic.startCompare(self.params.syntheticVolume, self.params.referenceVolume,
                                                      on_progress=self.onProgress, on_log=self.onLog,
                                                      on_finished=self.onCompareFinished),
                      "The error map could not be computed.", "Comparing…")

    def onCompareFinished(self, job) -> None:
        import slicer

        from .bridge import get_attributes
        from .views import show_overlay

        self.setRunning(False, "")
        if job.error:
            self.showError(f"The comparison failed: {job.error}")
            return
        outputs = job.outputs
        if outputs is None:  # cancelled
            return
        self.error_node = outputs.error_node
        self.ui.metricsTableView.setMRMLTableNode(outputs.table)
        show_overlay(outputs.real, outputs.error_node)
        m = outputs.metrics
        self.ui.statusLabel.setText(f"PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, MAE {m['mae']:.4f} inside the brain.")
        table_id = get_attributes(outputs.synthetic).get("selfCheckTable")
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
