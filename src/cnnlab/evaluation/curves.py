"""Threshold curves and calibration as pure NumPy functions: ROC and AUC (one-vs-rest, macro),
precision-recall curves with average precision, and expected calibration error with the numbers
behind a reliability diagram.

A K-class classifier gives K one-vs-rest binary problems: class c against the rest, scored by the
c-th column of the softmax output. Sweeping a threshold over the scores gives the ROC curve (false
positive rate, true positive rate) and the precision-recall curve; the macro ROC AUC is the plain
mean of the K areas (Hand & Till's "ovr" averaging as in scikit-learn). Average precision is the
step-wise area ``sum_n (R_n - R_{n-1}) P_n`` (no interpolation, as scikit-learn).

Calibration (Guo et al. 2017, "On Calibration of Modern Neural Networks"): split predictions into
equal-width confidence bins (lo, hi]; in each bin compare accuracy with mean confidence;
``ECE = sum_b (n_b / N) |acc_b - conf_b|``. A model that says "90 %" should be right 9 times in 10.
The tests cross-check every function against scikit-learn.
"""

from __future__ import annotations

import numpy as np


def _binary_counts(y_bin: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true/false positives at each distinct threshold, highest score first."""
    order = np.argsort(-score, kind="mergesort")
    s, y = score[order], y_bin[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each run of equal scores
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    return tps, fps, s[last]


def roc_curve(y_bin: np.ndarray, score: np.ndarray) -> dict[str, np.ndarray]:
    """ROC curve of one binary problem. Returns fpr, tpr (starting at (0, 0)) and thresholds."""
    y_bin, score = np.asarray(y_bin).astype(bool), np.asarray(score, dtype=np.float64)
    tps, fps, thr = _binary_counts(y_bin, score)
    tps, fps, thr = np.r_[0.0, tps], np.r_[0.0, fps], np.r_[np.inf, thr]
    pos, neg = tps[-1], fps[-1]
    return {
        "fpr": fps / neg if neg > 0 else np.full_like(fps, np.nan),
        "tpr": tps / pos if pos > 0 else np.full_like(tps, np.nan),
        "thresholds": thr,
    }


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Area under a curve by the trapezoidal rule (x monotonic)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def precision_recall_curve(y_bin: np.ndarray, score: np.ndarray) -> dict[str, np.ndarray]:
    """Precision and recall at every distinct threshold, from the highest threshold down, plus the
    average precision ``sum (R_n - R_{n-1}) P_n``. Recall starts at 0 with precision 1 (by convention)."""
    y_bin, score = np.asarray(y_bin).astype(bool), np.asarray(score, dtype=np.float64)
    tps, fps, thr = _binary_counts(y_bin, score)
    precision = tps / (tps + fps)
    recall = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision)) if tps[-1] > 0 else float("nan")
    return {
        "precision": np.r_[1.0, precision],
        "recall": np.r_[0.0, recall],
        "thresholds": thr,
        "average_precision": ap,
    }


def roc_ovr(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """One-vs-rest ROC curves for every class, their AUCs and the macro AUC.

    Args:
        y_true: (N,) labels in 0..K-1.
        probs: (N, K) class probabilities (or any scores that rank samples per class).

    Returns:
        {"curves": [{"fpr", "tpr"} per class], "auc": [K floats, NaN for a class absent from
        y_true or present in every sample], "macro_auc": mean over the defined AUCs}.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    curves, aucs = [], []
    for c in range(probs.shape[1]):
        r = roc_curve(y_true == c, probs[:, c])
        curves.append({"fpr": r["fpr"], "tpr": r["tpr"]})
        defined = not (np.isnan(r["fpr"]).any() or np.isnan(r["tpr"]).any())  # both classes present
        aucs.append(auc(r["fpr"], r["tpr"]) if defined else np.nan)
    aucs = np.array(aucs)
    return {"curves": curves, "auc": aucs, "macro_auc": float(np.nanmean(aucs)) if (~np.isnan(aucs)).any() else np.nan}


def pr_ovr(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """One-vs-rest precision-recall curves, average precision per class and its macro mean."""
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    curves, aps = [], []
    for c in range(probs.shape[1]):
        r = precision_recall_curve(y_true == c, probs[:, c])
        curves.append({"precision": r["precision"], "recall": r["recall"]})
        aps.append(r["average_precision"])
    aps = np.array(aps)
    return {"curves": curves, "ap": aps, "macro_ap": float(np.nanmean(aps)) if (~np.isnan(aps)).any() else np.nan}


def calibration(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict:
    """Reliability-diagram numbers and the expected calibration error of the top-1 prediction.

    Confidence is the largest probability of each row; bins are (lo, hi] of equal width on [0, 1]
    (the first bin includes 0). Empty bins have count 0 and NaN accuracy/confidence.

    Returns:
        {"edges": (n_bins+1,), "count", "accuracy", "confidence": (n_bins,) each,
        "ece": float, "mce": largest gap over non-empty bins}.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    conf = probs.max(1)
    correct = (probs.argmax(1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], conf, side="left")  # value == edge goes to the lower bin
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(bins, weights=correct, minlength=n_bins) / count
        mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / count
    gap = np.abs(acc - mean_conf)
    filled = count > 0
    return {
        "edges": edges,
        "count": count.astype(np.int64),
        "accuracy": acc,
        "confidence": mean_conf,
        "ece": float(np.sum(count[filled] / len(conf) * gap[filled])),
        "mce": float(gap[filled].max()) if filled.any() else float("nan"),
    }


def brier_score(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean over samples of the squared distance between the probability vector and the one-hot target."""
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.eye(probs.shape[1])[np.asarray(y_true)]
    return float(((probs - onehot) ** 2).sum(1).mean())


def curve_metrics(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict:
    """The scalar summaries of this module, JSON-ready: macro AUC and AP, per-class values, ECE."""
    roc, pr, cal = roc_ovr(y_true, probs), pr_ovr(y_true, probs), calibration(y_true, probs, n_bins)
    return {
        "macro_auc": roc["macro_auc"],
        "auc": [None if np.isnan(v) else float(v) for v in roc["auc"]],
        "macro_ap": pr["macro_ap"],
        "ap": [None if np.isnan(v) else float(v) for v in pr["ap"]],
        "ece": cal["ece"],
        "mce": cal["mce"],
        "brier": brier_score(y_true, probs),
    }
