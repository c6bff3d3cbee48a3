"""Evaluation metrics with worked numbers: a 3-class example small enough to count by hand.

Twelve test images of cat, dog and bird, the model's predictions and its top-2 guesses; from them
the confusion matrix, accuracy, per-class precision, recall and F1, macro and weighted averages,
balanced accuracy and top-2 accuracy, each printed with its fraction. The numbers come from
:mod:`cnnlab.evaluation.metrics` (what ``cnnlab evaluate`` reports); the text shows the counts
they are made of, so a student can redo every division.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.evaluation.metrics import classification_metrics, confusion_matrix, topk_accuracy
from cnnlab.teach.base import TeachingResult, new_figure, save_result

CLASSES = ["cat", "dog", "bird"]
# 5 cats, 4 dogs, 3 birds; the model over-predicts "dog"
Y_TRUE = [0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 1, 1, 1, 0, 2, 2, 1]
SECOND_GUESS = [1, 1, 1, 0, 2, 0, 0, 2, 1, 1, 0, 2]  # the runner-up class of each image (for top-2)


def metrics_example(out_dir: str | Path | None = None) -> TeachingResult:
    """The worked example's metrics, and a figure: the confusion matrix and per-class P/R/F1 bars."""
    y, p = np.array(Y_TRUE), np.array(Y_PRED)
    scores = np.zeros((len(y), len(CLASSES)))
    scores[np.arange(len(y)), p] = 2.0  # first guess
    scores[np.arange(len(y)), SECOND_GUESS] = 1.0  # second guess
    m = classification_metrics(y, p, class_names=CLASSES)
    cm = confusion_matrix(y, p, len(CLASSES))
    values: dict[str, Any] = {"y_true": y, "y_pred": p, "second_guess": SECOND_GUESS, "confusion": cm,
                              "metrics": m, "top2_accuracy": topk_accuracy(scores, y, 2)}  # fmt: skip
    fig = new_figure(13, 3.6)
    _confusion_panel(fig.add_subplot(1, 3, 1), cm, f"12 images: accuracy {m['accuracy']:.3f}")
    seed = seed_examples()
    _confusion_panel(fig.add_subplot(1, 3, 3), seed["confusion"],
                     f"the source's 150 images: accuracy {seed['metrics']['accuracy']:.3f}")  # fmt: skip
    ax = fig.add_subplot(1, 3, 2)
    x = np.arange(3)
    for i, key in enumerate(["precision", "recall", "f1"]):
        vals = [r[key] for r in m["per_class"]]
        bars = ax.bar(x + (i - 1) * 0.27, vals, 0.27, label=key)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, CLASSES)
    ax.set_ylim(0, 1.15)
    ax.legend(fontsize=7)
    ax.set_title("per-class precision, recall, F1", fontsize=9)
    fig.tight_layout()
    return save_result(fig, TeachingResult("metrics", values), out_dir)


def _confusion_panel(ax, cm: np.ndarray, title: str) -> None:
    ax.imshow(cm, cmap="Blues")
    for (r, c), n in np.ndenumerate(cm):
        ax.text(c, r, str(n), ha="center", va="center", color="white" if n > cm.max() / 2 else "black")
    ax.set_xticks(range(3), CLASSES)
    ax.set_yticks(range(3), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix, {title}", fontsize=9)


def metrics_text(result: TeachingResult) -> str:
    """Every metric with the counts it is computed from."""
    v = result.values
    cm, m = np.asarray(v["confusion"]), v["metrics"]
    n, right = int(cm.sum()), int(np.trace(cm))
    lines = ["true:      " + " ".join(f"{CLASSES[t]:>4}" for t in v["y_true"]),
             "predicted: " + " ".join(f"{CLASSES[t]:>4}" for t in v["y_pred"]),
             "confusion matrix (rows true, columns predicted: " + ", ".join(CLASSES) + "):",
             *[f"  {CLASSES[i]:<5}" + "".join(f"{c:>4}" for c in row) for i, row in enumerate(cm)],
             f"accuracy = {right} / {n} = {m['accuracy']:.4f}"]  # fmt: skip
    for i, r in enumerate(m["per_class"]):
        tp, col, row = int(cm[i, i]), int(cm[:, i].sum()), int(cm[i].sum())
        lines.append(f"{r['class']:<5} precision = {tp}/{col} = {r['precision']:.4f}   recall = {tp}/{row} = "
                     f"{r['recall']:.4f}   F1 = 2PR/(P+R) = {r['f1']:.4f}")  # fmt: skip
    mac, wei = m["macro"], m["weighted"]
    lines += [f"macro F1 (plain mean over classes) = {mac['f1']:.4f}; weighted F1 (by support 5, 4, 3) = "
              f"{wei['f1']:.4f}",
              f"balanced accuracy (mean recall) = {m['balanced_accuracy']:.4f}",
              f"top-2 accuracy (true class among the two highest scores) = {v['top2_accuracy']:.4f}"]  # fmt: skip
    return "\n".join(lines + ["", *seed_examples_text()])


# seed 002's three-class confusion matrix (rows true, columns predicted: cat, dog, bird)
SEED_CONFUSION = [[45, 3, 2], [2, 48, 0], [1, 0, 49]]


def seed_examples() -> dict[str, Any]:
    """The seeds' own metric examples recomputed: seed 000's 100 cat predictions (80 right) and 100 cats
    (80 found), and seed 002's confusion matrix, turned back into labels and scored by the library."""
    cm = np.asarray(SEED_CONFUSION)
    y = np.repeat(np.arange(3), cm.sum(1))  # every true label, row by row
    p = np.concatenate([np.repeat(np.arange(3), row) for row in cm])  # and its prediction
    m = classification_metrics(y, p, class_names=CLASSES)
    # a balanced test set (50 a class): the mean recall is the accuracy, as seed 003's CIFAR-10 row must obey
    return {"precision_80": 80 / (80 + 20), "recall_80": 80 / (80 + 20), "confusion": cm, "metrics": m}


def seed_examples_text() -> list[str]:
    v = seed_examples()
    m, cm = v["metrics"], v["confusion"]
    lines = ["the seeds' examples:",
             f"  100 images predicted 'cat', 80 of them cats: precision = 80 / (80 + 20) = {v['precision_80']:.2f}",
             f"  100 cats, 80 found: recall = 80 / (80 + 20) = {v['recall_80']:.2f}",
             "  confusion matrix " + str(cm.tolist()) + f": accuracy = {int(np.trace(cm))} / {int(cm.sum())} = "
             f"{m['accuracy']:.4f} ({100 * m['accuracy']:.1f} %)"]  # fmt: skip
    for r in m["per_class"]:
        lines.append(f"    {r['class']:<5} precision {r['precision']:.4f}  recall {r['recall']:.4f}  F1 {r['f1']:.4f}")
    mean_recall = m["macro"]["recall"]
    lines.append(f"  50 images a class: the mean recall {mean_recall:.4f} equals the accuracy (as on any balanced set)")
    return lines
