"""Slice-view arrangements of the Inspect section: reference | synthetic | error, with linked slices.

The layout uses its own three axial slice views (tags below), so the user's Red, Yellow and
Green views keep their orientations. Layout XML and the view contents are set through MRML nodes
(layout node, slice composite nodes), which also exist on `slicer-core`; switching the visible
layout needs the Slicer application.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

COMPARE_LAYOUT_ID = 7301  # custom layouts use numbers far from Slicer's own (< 1000)
VIEWS = (  # (singleton tag, label, color): reference, synthetic, error over reference
    ("MRImputationReference", "Ref", "#8f8f8f"),
    ("MRImputationSynthetic", "Syn", "#3a7bd5"),
    ("MRImputationError", "Err", "#d5733a"),
)


def compare_layout_xml() -> str:
    """Three axial slice views side by side.

    >>> root = ElementTree.fromstring(compare_layout_xml())
    >>> [v.get("singletontag") for v in root.iter("view")]
    ['MRImputationReference', 'MRImputationSynthetic', 'MRImputationError']
    """
    root = ElementTree.Element("layout", type="horizontal", split="true")
    for tag, label, color in VIEWS:
        view = ElementTree.SubElement(ElementTree.SubElement(root, "item"), "view", {"class": "vtkMRMLSliceNode",
                                                                                    "singletontag": tag})
        for name, value in (("orientation", "Axial"), ("viewlabel", label), ("viewcolor", color)):
            ElementTree.SubElement(view, "property", name=name, action="default").text = value
    return ElementTree.tostring(root, encoding="unicode")


def register_compare_layout(layout_node) -> int:
    """Add the layout description to `layout_node` (once); returns its id."""
    if not layout_node.IsLayoutDescription(COMPARE_LAYOUT_ID):
        layout_node.AddLayoutDescription(COMPARE_LAYOUT_ID, compare_layout_xml())
    return COMPARE_LAYOUT_ID


def composite_nodes(scene) -> list:
    """The slice composite nodes of the three compare views (those that exist), in VIEWS order."""
    nodes = []
    for tag, _, _ in VIEWS:
        for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
            node = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
            if node.GetLayoutName() == tag:
                nodes.append(node)
                break
    return nodes


def fill_compare_views(scene, reference, synthetic, error, opacity: float = 0.7) -> list:
    """Reference | synthetic | error over the reference, slices linked; returns the composite nodes."""
    contents = ((reference, None), (synthetic, None), (reference, error))
    nodes = composite_nodes(scene)
    for node, (background, foreground) in zip(nodes, contents):
        node.SetBackgroundVolumeID(background.GetID() if background is not None else None)
        node.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
        node.SetForegroundOpacity(opacity if foreground is not None else 0.0)
        node.SetLinkedControl(True)
    return nodes


def show_comparison(reference, synthetic, error) -> None:
    """Inside Slicer: switch to the three-view layout and show the three volumes, slices linked."""
    import slicer

    manager = slicer.app.layoutManager()
    layout_node = manager.layoutLogic().GetLayoutNode()
    manager.setLayout(register_compare_layout(layout_node))
    slicer.app.processEvents()  # the layout manager creates the views and their composite nodes
    fill_compare_views(slicer.mrmlScene, reference, synthetic, error)
    for tag, _, _ in VIEWS:
        widget = manager.sliceWidget(tag)
        if widget is not None:
            widget.sliceLogic().FitSliceToAll()


def show_overlay(background, foreground=None, opacity: float = 0.7) -> None:
    """Inside Slicer: `background` in every slice view, `foreground` over it, views fitted."""
    import slicer

    slicer.util.setSliceViewerLayers(background=background, foreground=foreground,
                                     foregroundOpacity=opacity if foreground is not None else 0.0, fit=True)
