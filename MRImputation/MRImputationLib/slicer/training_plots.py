"""Training curves as Slicer plots: a table node with one row per epoch, and chart nodes whose plot
series read its columns (losses; validation PSNR; validation SSIM), updated as epochs arrive.

Runs inside Slicer and on the `slicer-core` package (where it is tested); `slicer` and `vtk` are
imported inside the functions, so this file loads anywhere. Showing a chart in the view layout needs
the Slicer application (`show`).
"""

from __future__ import annotations

import math

from .training_progress import CURVE_COLUMNS, TrainingCurves

ATTRIBUTE = "MRImputation.trainingCurves"  # marks the nodes, and holds the run's name
# chart key -> (title, y-axis title, ((column, series name, RGB), ...))
CHARTS = {
    "losses": ("Training losses", "loss", (("loss_g", "Generator", (0.85, 0.25, 0.2)),
                                           ("loss_d", "Discriminator", (0.2, 0.45, 0.85)),
                                           ("loss_l1", "Generator L1", (0.95, 0.6, 0.1)),
                                           ("loss_adv", "Generator adversarial", (0.5, 0.3, 0.7)))),
    "psnr": ("Validation PSNR", "PSNR (dB)", (("val_psnr", "PSNR", (0.1, 0.6, 0.35)),)),
    "ssim": ("Validation SSIM", "SSIM", (("val_ssim", "SSIM", (0.1, 0.5, 0.6)),)),
}


def _find(scene, node_class: str, name: str):
    for index in range(scene.GetNumberOfNodesByClass(node_class)):
        node = scene.GetNthNodeByClass(index, node_class)
        if node.GetName() == name and node.GetAttribute(ATTRIBUTE) is not None:
            return node
    return None


def _node(scene, node_class: str, name: str, run: str):
    node = _find(scene, node_class, name)
    if node is None:
        node = scene.AddNewNodeByClass(node_class, name)
        node.SetAttribute(ATTRIBUTE, run)
    return node


class TrainingPlots:
    """The curves of one training run in the scene; a second TrainingPlots of the same run reuses its nodes.

    `plots.update(curves)` rewrites the table (charts follow); `plots.show("losses")` puts a chart
    in the layout's plot view (Slicer application only).
    """

    def __init__(self, run: str = "MRImputation training", scene=None) -> None:
        import slicer
        import vtk

        self.run = run
        self.scene = scene or slicer.mrmlScene
        self.table = _node(self.scene, "vtkMRMLTableNode", f"{run} curves", run)
        table = self.table.GetTable()
        for column in ("epoch", *CURVE_COLUMNS):
            if table.GetColumnByName(column) is None:
                array = vtk.vtkDoubleArray()
                array.SetName(column)
                table.AddColumn(array)
        self.charts = {}
        self.series = {}
        for key, (title, y_title, lines) in CHARTS.items():
            chart = _node(self.scene, "vtkMRMLPlotChartNode", f"{run}: {title}", run)
            chart.SetTitle(f"{title} ({run})")
            chart.SetXAxisTitle("epoch")
            chart.SetYAxisTitle(y_title)
            chart.SetLegendVisibility(len(lines) > 1)
            for column, label, color in lines:
                series = _node(self.scene, "vtkMRMLPlotSeriesNode", f"{run}: {label}", run)
                series.SetAndObserveTableNodeID(self.table.GetID())
                series.SetXColumnName("epoch")
                series.SetYColumnName(column)
                series.SetPlotType(series.PlotTypeScatter)  # markers joined by lines; gaps stay visible
                series.SetMarkerStyle(series.MarkerStyleCircle)
                series.SetLineStyle(series.LineStyleSolid)
                series.SetColor(*color)
                if chart.GetPlotSeriesNodeIndexFromID(series.GetID()) < 0:
                    chart.AddAndObservePlotSeriesNodeID(series.GetID())
                self.series[column] = series
            self.charts[key] = chart

    def update(self, curves: TrainingCurves) -> None:
        """One table row per epoch of `curves` (NaN where an epoch has no value, e.g. no validation)."""
        table = self.table.GetTable()
        for name, values in curves.columns().items():
            array = table.GetColumnByName(name)
            array.SetNumberOfTuples(len(values))
            for index, value in enumerate(values):
                array.SetValue(index, value if value is not None else math.nan)
            array.Modified()
        table.Modified()
        self.table.Modified()

    def chart(self, key: str = "losses"):
        if key not in self.charts:
            raise KeyError(f"chart {key!r}: one of {', '.join(self.charts)}")
        return self.charts[key]

    def show(self, key: str = "losses") -> None:
        """Show a chart in the layout's plot view (switches to a layout with one). Slicer application only."""
        import slicer

        slicer.modules.plots.logic().ShowChartInLayout(self.chart(key))

    def remove(self) -> None:
        """Remove the run's table, charts and series from the scene."""
        for node in [*self.series.values(), *self.charts.values(), self.table]:
            if node.GetScene() is not None:
                self.scene.RemoveNode(node)
        self.series, self.charts = {}, {}
