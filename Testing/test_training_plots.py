"""Training curves as real Slicer plot nodes (the `slicer-core` package): table, charts, series, updates."""

from __future__ import annotations

import math

import pytest
import slicer  # the slicer-core package (pyproject's test extra): missing means the set-up is broken, not a skip

from MRImputationLib.slicer.training_progress import CURVE_COLUMNS, TrainingCurves
from MRImputationLib.slicer.training_plots import ATTRIBUTE, TrainingPlots

RECORDS = [{"epoch": 1, "loss_g": 0.9, "loss_d": 0.7, "loss_l1": 0.3, "loss_adv": 0.6},
           {"epoch": 2, "loss_g": 0.7, "loss_d": 0.6, "loss_l1": 0.2, "loss_adv": 0.5, "val_psnr": 21.5, "val_ssim": 0.8},
           {"epoch": 3, "loss_g": 0.6, "loss_d": 0.5, "loss_l1": 0.2, "loss_adv": 0.4}]


def _column(table_node, name: str) -> list[float]:
    return [float(v) for v in slicer.util.arrayFromTableColumn(table_node, name)]


def test_every_epoch_becomes_a_table_row_that_the_chart_series_plot(scene):
    plots = TrainingPlots("ixi-run", scene=scene)
    plots.update(TrainingCurves(RECORDS))
    table = plots.table
    assert table.GetNumberOfRows() == 3
    assert [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())] == ["epoch", *CURVE_COLUMNS]
    assert _column(table, "epoch") == [1.0, 2.0, 3.0] and _column(table, "loss_g") == [0.9, 0.7, 0.6]
    psnr = _column(table, "val_psnr")
    assert math.isnan(psnr[0]) and psnr[1] == 21.5 and math.isnan(psnr[2])  # validated in epoch 2 only

    losses = plots.chart("losses")
    assert losses.GetNumberOfPlotSeriesNodes() == 4 and losses.GetXAxisTitle() == "epoch"
    for index in range(losses.GetNumberOfPlotSeriesNodes()):
        series = losses.GetNthPlotSeriesNode(index)
        assert series.GetTableNodeID() == table.GetID() and series.GetXColumnName() == "epoch"
        assert series.GetYColumnName() in ("loss_g", "loss_d", "loss_l1", "loss_adv")
    assert plots.chart("psnr").GetNthPlotSeriesNode(0).GetYColumnName() == "val_psnr"
    assert plots.chart("ssim").GetYAxisTitle() == "SSIM"
    assert all(n.GetAttribute(ATTRIBUTE) == "ixi-run" for n in (table, losses, *plots.series.values()))
    with pytest.raises(KeyError, match="losses"):
        plots.chart("accuracy")


def test_updates_follow_the_curves_and_a_second_panel_reuses_the_run_s_nodes(scene):
    plots = TrainingPlots("ixi-run", scene=scene)
    plots.update(TrainingCurves(RECORDS[:1]))
    again = TrainingPlots("ixi-run", scene=scene)  # e.g. the module reopened, or the run resumed
    assert again.table.GetID() == plots.table.GetID()
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotSeriesNode") == 6
    assert again.chart("losses").GetNumberOfPlotSeriesNodes() == 4
    again.update(TrainingCurves(RECORDS))
    assert plots.table.GetNumberOfRows() == 3
    other = TrainingPlots("other-run", scene=scene)
    assert other.table.GetID() != plots.table.GetID() and other.table.GetNumberOfRows() == 0


def test_removing_the_plots_leaves_nothing_of_the_run_in_the_scene(scene):
    plots = TrainingPlots("ixi-run", scene=scene)
    plots.update(TrainingCurves(RECORDS))
    plots.remove()
    for node_class in ("vtkMRMLTableNode", "vtkMRMLPlotChartNode", "vtkMRMLPlotSeriesNode"):
        assert scene.GetNumberOfNodesByClass(node_class) == 0
