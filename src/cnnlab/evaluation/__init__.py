"""Evaluation: metrics as pure functions of arrays (``metrics``, ``curves``: NumPy only) and the
interpretation of a run's mistakes (``interpret``). Names are loaded on first use::

    from cnnlab.evaluation import classification_metrics, roc_ovr, calibration, run_predictions
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "metrics": [
        "classification_metrics",
        "confusion_matrix",
        "cross_entropy",
        "format_report",
        "normalize_confusion",
        "normalize_rows",
        "per_class_scores",
        "report_rows",
        "softmax",
        "topk_accuracies",
        "topk_accuracy",
    ],
    "curves": [
        "auc",
        "brier_score",
        "calibration",
        "curve_metrics",
        "pr_ovr",
        "precision_recall_curve",
        "roc_curve",
        "roc_ovr",
    ],
    "interpret": [
        "interpret_run",
        "misclassified",
        "most_confused",
        "prediction_table",
        "run_predictions",
        "sample_losses",
        "top_losses",
        "write_misclassified_csv",
    ],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"cnnlab.evaluation.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'cnnlab.evaluation' has no attribute {name!r}")
