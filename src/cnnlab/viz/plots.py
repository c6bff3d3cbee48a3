"""Run plots: training curves and confusion-matrix heatmaps, written as PNG files.

matplotlib runs with the Agg backend (no display needed). Each function returns the Figure after
saving it, so tests and notebooks can inspect axes and values.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_history(history: list[dict[str, float]], path: str | Path | None = None):
    """Loss, accuracy and learning rate per epoch (three panels)."""
    epochs = [int(r["epoch"]) for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = [("loss", ["train_loss", "val_loss"]), ("accuracy", ["train_acc", "val_acc"]), ("learning rate", ["lr"])]
    for ax, (title, keys) in zip(axes, panels):
        for k in keys:
            vals = [r.get(k, math.nan) for r in history]
            if not all(math.isnan(v) for v in vals):
                ax.plot(epochs, vals, marker="o", ms=3, label=k)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if title == "learning rate":
            if all(r.get("lr", 0) > 0 for r in history):
                ax.set_yscale("log")
        else:
            ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def plot_confusion(
    cm: np.ndarray, classes: list[str], path: str | Path | None = None, normalize: bool = True, title: str | None = None
):
    """Heatmap of a confusion matrix; rows are true classes. Counts annotated when K <= 20."""
    cm = np.asarray(cm, dtype=np.float64)
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    k = len(classes)
    size = max(4.5, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(k), classes, rotation=90 if k > 10 else 45, ha="right" if k <= 10 else "center")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix (counts)"))
    if k <= 20:
        for i in range(k):
            for j in range(k):
                text = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shown[i, j] > 0.5 * (shown.max() or 1) else "black",
                )
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig
