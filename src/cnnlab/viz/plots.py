"""Run plots: training curves, confusion-matrix heatmaps, ROC and precision-recall curves, the
reliability diagram and image grids (worst predictions, right/wrong predictions), written as PNG.

matplotlib runs with the Agg backend (no display needed). Each function returns the Figure after
saving it, so tests and notebooks can inspect axes and values; beside every ``x.png`` it writes
``x.json`` with the numbers that were plotted, so a test (or a user) can check the picture's content
without reading pixels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from cnnlab.files import atomic


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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        if title == "learning rate":
            if all(r.get("lr", 0) > 0 for r in history):
                ax.set_yscale("log")
        else:
            ax.legend()
    _margins(fig, left=0.7, right=0.2, bottom=0.55, top=0.35, gap=0.75)
    keys = ("train_loss", "val_loss", "train_acc", "val_acc", "lr")
    series = {k: [r.get(k, math.nan) for r in history] for k in keys}
    return _finish(fig, path, {"epochs": epochs, "panels": [p[0] for p in panels], **series})


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
    return _finish(fig, path, {"classes": list(classes), "normalize": normalize, "matrix": shown.tolist()})


def _margins(fig, left: float, right: float, bottom: float, top: float, gap: float) -> None:
    """Fixed margins and gaps between panels, in inches, for a figure whose text is known in advance
    (numbers on the axes, set titles, legends inside): ``tight_layout`` measures every label first,
    which is much of a small figure's time. The confusion matrices, labelled by class names of any
    length, keep it."""
    w, h = fig.get_size_inches()
    n = len(fig.axes)
    panel = (w - left - right - gap * (n - 1)) / n
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h, wspace=gap / panel)


def _finish(fig, path: str | Path | None, data: dict[str, Any], dpi: int = 110):
    """Save ``fig`` as PNG and ``data`` as JSON beside it (same stem), close it, return it."""
    if path is not None:
        path = Path(path)
        # zlib level 1: the report's flat-coloured PNGs encode faster, for somewhat larger files
        fast = {"pil_kwargs": {"compress_level": 1}} if path.suffix.lower() == ".png" else {}
        atomic.save_figure(fig, path, dpi=dpi, **fast)
        text = json.dumps(data, indent=1, default=_jsonable)
        atomic.write_text(path.with_suffix(".json"), text.replace("NaN", "null") + "\n")
    plt.close(fig)
    return fig


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _thin(x: np.ndarray, y: np.ndarray, n: int = 300) -> tuple[list[float], list[float]]:
    """At most ``n`` points of a curve, always keeping the first and the last (for plots and JSON)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) > n:
        keep = np.unique(np.r_[np.linspace(0, len(x) - 1, n).round().astype(int), len(x) - 1])
        x, y = x[keep], y[keep]
    return [round(float(v), 6) for v in x], [round(float(v), 6) for v in y]


def _legend_classes(k: int) -> bool:
    return k <= 12  # beyond a dozen classes a legend hides the curves


def plot_roc_pr(roc: dict, pr: dict, classes: list[str], path: str | Path | None = None):
    """Two panels: one-vs-rest ROC curves (with the macro AUC) and precision-recall curves (macro AP).

    Args:
        roc: the result of :func:`cnnlab.evaluation.curves.roc_ovr`.
        pr: the result of :func:`cnnlab.evaluation.curves.pr_ovr`.
    """
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.6))
    data: dict[str, Any] = {"classes": list(classes), "panels": ["roc", "pr"], "roc": [], "pr": []}
    colors = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for c, name in enumerate(classes):
        fpr, tpr = _thin(roc["curves"][c]["fpr"], roc["curves"][c]["tpr"])
        rec, prec = _thin(pr["curves"][c]["recall"], pr["curves"][c]["precision"])
        a1.plot(fpr, tpr, lw=1.2, color=colors(c % colors.N), label=f"{name} ({roc['auc'][c]:.3f})")
        a2.step(rec, prec, where="post", lw=1.2, color=colors(c % colors.N), label=f"{name} ({pr['ap'][c]:.3f})")
        data["roc"].append({"class": name, "auc": roc["auc"][c], "fpr": fpr, "tpr": tpr})
        data["pr"].append({"class": name, "ap": pr["ap"][c], "recall": rec, "precision": prec})
    a1.plot([0, 1], [0, 1], ls="--", color="gray", lw=0.8)
    a1.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    a1.set_title(f"ROC, one-vs-rest (macro AUC {roc['macro_auc']:.4f})")
    a2.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
    a2.set_title(f"precision-recall (macro AP {pr['macro_ap']:.4f})")
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        if _legend_classes(len(classes)):
            ax.legend(fontsize=7, loc="lower right" if ax is a1 else "lower left")
    _margins(fig, left=0.75, right=0.2, bottom=0.6, top=0.4, gap=0.85)
    data.update(macro_auc=roc["macro_auc"], macro_ap=pr["macro_ap"])
    return _finish(fig, path, data)


def plot_reliability(cal: dict, path: str | Path | None = None):
    """Reliability diagram (accuracy against confidence per bin, gap to the diagonal shaded) and the
    histogram of confidences. ``cal`` is the result of :func:`cnnlab.evaluation.curves.calibration`."""
    edges, count = np.asarray(cal["edges"]), np.asarray(cal["count"])
    acc, conf = np.asarray(cal["accuracy"]), np.asarray(cal["confidence"])
    width, mids = np.diff(edges), (edges[:-1] + edges[1:]) / 2
    filled = count > 0
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
    a1.bar(mids[filled], acc[filled], width=width[filled], edgecolor="black", color="#4c72b0", label="accuracy")
    a1.bar(
        mids[filled],
        conf[filled] - acc[filled],
        bottom=acc[filled],
        width=width[filled],
        color="#dd8452",
        alpha=0.5,
        label="gap to confidence",
    )
    a1.plot([0, 1], [0, 1], ls="--", color="gray", lw=1)
    a1.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
    a1.set_title(f"reliability diagram (ECE {cal['ece']:.4f})")
    a1.legend(loc="upper left", fontsize=8)
    a2.bar(mids, count, width=width, edgecolor="black", color="#55a868")
    a2.set(xlim=(0, 1), xlabel="confidence", ylabel="predictions")
    a2.set_title("confidence histogram")
    _margins(fig, left=0.75, right=0.2, bottom=0.6, top=0.4, gap=0.85)
    data = {k: cal[k] for k in ("edges", "count", "accuracy", "confidence", "ece", "mce")}
    return _finish(fig, path, {"panels": ["reliability", "histogram"], **data})


def plot_image_grid(
    images: np.ndarray, rows: list[dict[str, Any]], path: str | Path | None = None, title: str = "", cols: int = 8
):
    """A grid of images, each titled ``true -> pred (confidence)`` with its id, framed green when the
    prediction is right and red when wrong.

    The figure has one axes, measured in inches, that holds every image, frame and title: an axes per
    thumbnail made matplotlib set up ticks, spines and a layout for each, which a thumbnail does not show.

    Args:
        images: (n, H, W, C) float in [0, 1]; C is 1 (shown grey) or 3.
        rows: n rows of :func:`cnnlab.evaluation.interpret.prediction_table`.
    """
    from matplotlib.patches import Rectangle

    n = len(rows)
    if n == 0:
        raise ValueError("plot_image_grid needs at least one image")
    cols = min(cols, n)
    nrows = math.ceil(n / cols)
    cell_w, cell_h, head = 1.6, 1.9, 0.4 if title else 0.0  # inches
    width, height = cell_w * cols, cell_h * nrows + head
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    for i, (img, r) in enumerate(zip(images, rows)):
        img = np.clip(img, 0, 1)
        grey = img.shape[-1] == 1
        side = min(cell_w - 0.14, cell_h - 0.46)  # room for the frame beside and two lines of title above
        h, w = img.shape[:2]
        iw, ih = (side, side * h / w) if w >= h else (side * w / h, side)
        cx = (i % cols + 0.5) * cell_w
        top = head + (i // cols) * cell_h + 0.38
        box = (cx - iw / 2, cx + iw / 2, top + ih, top)  # left, right, bottom, top in the axes' inches
        ax.imshow(img[..., 0] if grey else img, cmap="gray" if grey else None, vmin=0, vmax=1, extent=box)
        color = "#1a9850" if r["correct"] else "#d73027"
        ax.add_patch(Rectangle((box[0], top), iw, ih, fill=False, edgecolor=color, linewidth=3))
        label = f"{r['true'][:10]}→{r['pred'][:10]} {r['confidence']:.2f}\n{str(r['id'])[-18:]}"
        ax.text(cx, top - 0.06, label, fontsize=7, color=color, ha="center", va="bottom")
    if title:
        ax.text(width / 2, 0.08, title, fontsize=10, ha="center", va="top")
    ax.set(xlim=(0, width), ylim=(height, 0))  # after imshow, whose extents move them: y grows downwards, as rows do
    keep = ("index", "id", "true", "pred", "confidence", "loss", "correct")
    return _finish(fig, path, {"title": title, "panels": n, "rows": [{k: r[k] for k in keep if k in r} for r in rows]})
