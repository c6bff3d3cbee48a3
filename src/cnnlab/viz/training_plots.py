"""The figures of the training tools: the LR range test, the augmentation preview, run comparisons.

Plots are drawn only in ``cnnlab.viz``; the engine, the run index and the commands compute and
call these.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cnnlab.files import atomic

# panels of the comparison figure: title -> the history columns drawn there, solid then dashed
# (training curves too, so a run trained without a validation split, such as the CIFAR-10 speed
# recipe, still shows)
PANELS = {
    "accuracy (solid: validation, dashed: training)": ("val_acc", "train_acc"),
    "loss (solid: validation, dashed: training)": ("val_loss", "train_loss"),
    "learning rate": ("lr",),
}


def plot_lr_find(result, path: str | Path) -> Path:
    """Smoothed (and raw) loss against LR on a log axis, the suggestion marked (``engine.lr_find.LRFindResult``)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses, color="0.8", lw=1, label="loss")
    ax.plot(result.lrs, result.smoothed, color="C0", lw=2, label="smoothed loss")
    ax.axvline(result.suggestion, color="C3", ls="--", label=f"suggested {result.suggestion:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    top = np.percentile(result.smoothed, 95) * 1.2 if result.smoothed else None
    if top:
        ax.set_ylim(min(result.smoothed) * 0.9, top)
    ax.legend()
    ax.set_title("LR range test")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_augment_grid(before, after, path: str | Path, title: str) -> Path:
    """Two blocks of image rows: originals, then augmented; float (B, C, H, W) in [0, 1]."""
    n = len(before)
    cols = min(n, 8)
    rows = -(-n // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(cols * 1.2, 2 * rows * 1.25), squeeze=False)
    for block, batch in enumerate((before, after)):
        for i in range(rows * cols):
            ax = axes[block * rows + i // cols][i % cols]
            ax.axis("off")
            if i < n:
                img = batch[i].clamp(0, 1).permute(1, 2, 0).numpy()
                ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1)
        axes[block * rows][0].set_title("original" if block == 0 else "augmented", loc="left", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


def compare_figure(runs: list):
    """One panel per entry of PANELS, one colour per run (``runs.index.RunInfo``; the same in every
    panel), its validation curve solid and its training curve dashed."""
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.8))
    for ax, (title, keys) in zip(axes, PANELS.items()):
        for i, run in enumerate(runs):
            named = False  # the run's name labels its first line in the panel, so the legend lists it once
            for key, style in zip(keys, ("-", "--")):
                pts = [(row["epoch"], row[key]) for row in run.history if not math.isnan(row.get(key, math.nan))]
                if pts:
                    label = "_" + run.name if named else run.name
                    ax.plot(*zip(*pts), style, marker="o", ms=3, color=f"C{i % 10}", label=label)
                    named = True
        ax.set(title=title, xlabel="epoch")
        if key == "lr" and ax.lines and all(y > 0 for line in ax.lines for y in line.get_ydata()):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_compare(runs: list, path: str | Path) -> Path:
    """Write the comparison figure of ``runs`` (``runs.index.RunInfo``) to ``path``."""
    fig = compare_figure(runs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
