"""Classification metrics as pure functions of NumPy arrays (no torch), cross-checked against
scikit-learn in the tests.

Definitions follow seed 000: precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their
harmonic mean; macro averages weight every class equally, weighted averages by support; the
row-normalised confusion matrix divides each row by its class count. A class that is never
predicted has precision 0 (scikit-learn's ``zero_division=0``), likewise recall for a class with
no samples.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts; row = true class, column = predicted class."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def normalize_rows(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows of zeros stay zero)."""
    sums = cm.sum(1, keepdims=True)
    return np.divide(cm, sums, out=np.zeros(cm.shape, dtype=np.float64), where=sums > 0)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix."""
    tp = np.diag(cm).astype(np.float64)
    precision = _safe_div(tp, cm.sum(0))
    recall = _safe_div(tp, cm.sum(1))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": cm.sum(1)}


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    return float(per_class_scores(confusion_matrix(y_true, y_pred, num_classes))["f1"].mean())


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable: subtract the row max before exponentiating."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean of -log softmax(logits)[target] = logsumexp(z) - z_target (seed 000's form)."""
    z = logits.astype(np.float64)
    m = z.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(1))
    return float((lse - z[np.arange(len(z)), targets]).mean())


def topk_accuracy(scores: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Share of samples whose target is among the k highest scores (k is capped at the class count)."""
    k = min(k, scores.shape[1])
    topk = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float((topk == np.asarray(targets)[:, None]).any(1).mean())


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray | None = None, class_names: list[str] | None = None
) -> dict:
    """Everything the run summary reports, as a JSON-ready dict.

    Args:
        y_true, y_pred: (N,) integer labels.
        scores: optional (N, K) logits or probabilities, for top-5 accuracy and the loss (logits).
        class_names: K names; default "0".."K-1".
    """
    k = (
        len(class_names)
        if class_names
        else (scores.shape[1] if scores is not None else int(max(y_true.max(), y_pred.max())) + 1)
    )
    names = list(class_names) if class_names else [str(i) for i in range(k)]
    cm = confusion_matrix(y_true, y_pred, k)
    s = per_class_scores(cm)
    support = s["support"].astype(np.float64)
    weights = support / max(support.sum(), 1)
    out = {
        "num_samples": int(len(y_true)),
        "accuracy": float((np.asarray(y_true) == np.asarray(y_pred)).mean()),
        "balanced_accuracy": float(s["recall"][support > 0].mean()),
        "macro": {m: float(s[m].mean()) for m in ("precision", "recall", "f1")},
        "weighted": {m: float((s[m] * weights).sum()) for m in ("precision", "recall", "f1")},
        "per_class": [
            {
                "class": names[i],
                "precision": float(s["precision"][i]),
                "recall": float(s["recall"][i]),
                "f1": float(s["f1"][i]),
                "support": int(s["support"][i]),
            }
            for i in range(k)
        ],
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalized": np.round(normalize_rows(cm), 6).tolist(),
        "classes": names,
    }
    if scores is not None:
        if k > 5:  # top-5 of 5 classes or fewer is 1 by definition: not worth a number
            out["top5_accuracy"] = topk_accuracy(scores, y_true, 5)
        out["loss"] = cross_entropy(scores, y_true)
    return out


def normalize_confusion(cm: np.ndarray, over: str = "true") -> np.ndarray:
    """Confusion matrix as shares: ``over="true"`` divides rows (per-class recall on the diagonal),
    ``"pred"`` divides columns (per-class precision on the diagonal), ``"all"`` divides by the total."""
    cm = np.asarray(cm, dtype=np.float64)
    if over == "true":
        return normalize_rows(cm)
    if over == "pred":
        return normalize_rows(cm.T).T
    if over == "all":
        return cm / max(cm.sum(), 1.0)
    raise ValueError(f"over must be 'true', 'pred' or 'all', not {over!r}")


def topk_accuracies(scores: np.ndarray, targets: np.ndarray, ks: tuple[int, ...] = (1, 3, 5)) -> dict[str, float]:
    """``{"top1": ..., "top3": ..., "top5": ...}`` for the k that do not exceed the class count."""
    return {f"top{k}": topk_accuracy(scores, targets, k) for k in ks if k <= scores.shape[1]}


def report_rows(m: dict) -> list[dict]:
    """The classification report as table rows: one per class, then macro and weighted averages
    (support = all samples), ready for a CSV or an HTML table."""
    rows = [dict(r) for r in m["per_class"]]
    for avg in ("macro", "weighted"):
        rows.append({"class": f"{avg} avg", **m[avg], "support": m["num_samples"]})
    return rows


def format_report(m: dict) -> str:
    """A fixed-width table of per-class precision/recall/F1/support with averages (like scikit-learn's)."""
    width = max(12, *(len(r["class"]) for r in m["per_class"]))
    lines = [f"{'class':>{width}}  precision  recall     f1  support"]
    for r in m["per_class"]:
        lines.append(
            f"{r['class']:>{width}}  {r['precision']:9.4f}  {r['recall']:6.4f}  {r['f1']:.4f}  {r['support']:7d}"
        )
    n = m["num_samples"]
    lines.append("")
    for avg in ("macro", "weighted"):
        a = m[avg]
        lines.append(f"{avg + ' avg':>{width}}  {a['precision']:9.4f}  {a['recall']:6.4f}  {a['f1']:.4f}  {n:7d}")
    lines.append(
        f"{'accuracy':>{width}}  {m['accuracy']:.4f}"
        + (f"   top-5 {m['top5_accuracy']:.4f}" if "top5_accuracy" in m else "")
    )
    return "\n".join(lines)
