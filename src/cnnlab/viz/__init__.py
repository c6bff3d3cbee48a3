"""Plots of runs (training curves, confusion matrices, ROC/PR, reliability, image grids), pictures of a
trained network (``inspect``: filters, feature maps, Grad-CAM, saliency, loss landscape) and the HTML
report. The teaching figures live in :mod:`cnnlab.teach`. Names are loaded on first use (matplotlib
and torch are heavy)::

    from cnnlab.viz import write_report, visualize, grad_cam, loss_landscape
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "plots": ["plot_confusion", "plot_history", "plot_image_grid", "plot_reliability", "plot_roc_pr"],
    "inspect": [
        "conv_layers",
        "feature_maps",
        "filter_normalized_direction",
        "first_layer_filters",
        "grad_cam",
        "loss_landscape",
        "plot_feature_maps",
        "plot_filters",
        "plot_heatmap",
        "plot_landscape_1d",
        "plot_landscape_2d",
        "saliency",
        "visualize",
    ],
    "report": ["write_report", "write_report_safely"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"cnnlab.viz.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'cnnlab.viz' has no attribute {name!r}")
