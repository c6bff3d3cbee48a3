"""ROC curves, AUC and class imbalance, on numbers small enough to check by hand.

A detector scores 10 positives and 40 negatives (an imbalanced test set). Sweeping the threshold gives
the ROC curve (true positive rate against false positive rate) from :mod:`cnnlab.evaluation.curves`;
its area equals the fraction of (positive, negative) pairs the scores put in the right order (the
Mann-Whitney statistic), which the text checks. At one threshold the counts TP, FP, TN, FN give
precision, recall, the false positive rate FP / (FP + TN) and the false discovery rate FP / (TP + FP)
= 1 - precision: two different numbers (seed 000 calls precision a measure of the former).

For imbalance: the class weights n / (K * n_k) that ``--balance weights`` uses (900 / 90 / 10 images
give 0.37, 3.7 and 33.3), a weighted cross-entropy worked out on three samples, and the focal loss
-(1 - p)^gamma * log p of Lin et al. (2017) against plain cross-entropy for easy and hard examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.splits import balanced_class_weights
from cnnlab.evaluation.curves import auc, roc_curve
from cnnlab.teach.base import TeachingResult, new_figure, save_result

N_POS, N_NEG, THRESHOLD = 10, 40, 0.5
COUNTS = [900, 90, 10]  # an imbalanced three-class training set
GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)


def scores(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores): positives score around 0.65, negatives around 0.35, both spread by 0.15."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(N_POS, dtype=int), np.zeros(N_NEG, dtype=int)]
    s = np.clip(np.r_[rng.normal(0.65, 0.15, N_POS), rng.normal(0.35, 0.15, N_NEG)], 0.0, 1.0)
    return y, np.round(s, 3)


def pairwise_auc(y: np.ndarray, s: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting half."""
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def focal_loss(p: float | np.ndarray, gamma: float) -> np.ndarray:
    """-(1 - p)^gamma * log p for the probability p of the true class (gamma 0: cross-entropy)."""
    p = np.asarray(p, dtype=np.float64)
    return -((1 - p) ** gamma) * np.log(p)


def roc_example(out_dir: str | Path | None = None) -> TeachingResult:
    y, s = scores()
    curve = roc_curve(y, s)
    pred = s >= THRESHOLD
    tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
    fn, tn = N_POS - tp, N_NEG - fp
    weights = balanced_class_weights(COUNTS)
    # weighted cross-entropy on one sample of each class, p of the true class 0.9, 0.6, 0.3
    p_true = np.array([0.9, 0.6, 0.3])
    values: dict[str, Any] = {
        "labels": y, "scores": s, "fpr": curve["fpr"], "tpr": curve["tpr"], "auc": auc(curve["fpr"], curve["tpr"]),
        "pairwise_auc": pairwise_auc(y, s), "counts": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        "precision": tp / (tp + fp), "recall": tp / N_POS, "fpr_at_threshold": fp / N_NEG, "fdr": fp / (tp + fp),
        "class_counts": COUNTS, "class_weights": weights, "p_true": p_true,
        "ce": -np.log(p_true), "weighted_ce": float((weights * -np.log(p_true)).sum() / np.sum(weights)),
        "focal": {g: focal_loss([0.9, 0.5, 0.1], g) for g in GAMMAS},
    }  # fmt: skip
    return save_result(_figure(values), TeachingResult("roc", values), out_dir)


def _figure(v: dict[str, Any]):
    fig = new_figure(13, 4.2)
    ax = fig.add_subplot(1, 3, 1)
    ax.step(v["fpr"], v["tpr"], where="post", label=f"ROC, AUC = {v['auc']:.3f}")
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="chance (AUC 0.5)")
    ax.plot(v["fpr_at_threshold"], v["recall"], "o", color="C3", label=f"threshold {THRESHOLD}")
    ax.set_xlabel("false positive rate FP / (FP + TN)")
    ax.set_ylabel("true positive rate (recall)")
    ax.set_title(f"{N_POS} positives, {N_NEG} negatives", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax = fig.add_subplot(1, 3, 2)
    y, s = v["labels"], v["scores"]
    for label, name in ((0, "negatives"), (1, "positives")):
        ax.hist(s[y == label], bins=np.linspace(0, 1, 21), alpha=0.6, label=name)
    ax.axvline(THRESHOLD, color="C3", ls="--", lw=1)
    c = v["counts"]
    ax.set_title(f"TP {c['tp']}, FP {c['fp']}, FN {c['fn']}, TN {c['tn']} at {THRESHOLD}", fontsize=9)
    ax.set_xlabel("score")
    ax.set_ylabel("images")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 3, 3)
    p = np.linspace(0.01, 1, 200)
    for g in GAMMAS:
        ax.plot(p, focal_loss(p, g), label=f"gamma = {g:g}" + (" (cross-entropy)" if g == 0 else ""))
    ax.set_xlabel("probability of the true class p")
    ax.set_ylabel("loss")
    ax.set_ylim(0, 5)
    ax.set_title("focal loss -(1 - p)^gamma log p", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def roc_text(result: TeachingResult) -> str:
    v = result.values
    c = v["counts"]
    lines = [f"{N_POS} positives and {N_NEG} negatives; at threshold {THRESHOLD}: TP {c['tp']}, FP {c['fp']}, "
             f"FN {c['fn']}, TN {c['tn']}",
             f"  precision = TP / (TP + FP) = {c['tp']}/{c['tp'] + c['fp']} = {v['precision']:.3f}",
             f"  recall    = TP / (TP + FN) = {c['tp']}/{N_POS} = {v['recall']:.3f}",
             f"  false positive rate  = FP / (FP + TN) = {c['fp']}/{N_NEG} = {v['fpr_at_threshold']:.3f}",
             f"  false discovery rate = FP / (TP + FP) = {c['fp']}/{c['tp'] + c['fp']} = {v['fdr']:.3f} "
             "(= 1 - precision)",
             f"ROC AUC (trapezoids) = {v['auc']:.4f}; share of (positive, negative) pairs ranked right = "
             f"{v['pairwise_auc']:.4f}", "",
             f"class counts {COUNTS}: weights n / (K * n_k) = "
             + ", ".join(f"{sum(COUNTS)}/(3*{n}) = {w:.3f}" for n, w in zip(COUNTS, v["class_weights"], strict=True)),
             "one sample of each class, p(true) = 0.9, 0.6, 0.3: cross-entropy "
             + ", ".join(f"{x:.3f}" for x in v["ce"]) + f"; plain mean {np.mean(v['ce']):.3f}, "
             f"weighted mean {v['weighted_ce']:.3f} (the rare class's loss dominates)", "",
             "focal loss for p(true) = 0.9 (easy), 0.5, 0.1 (hard):"]  # fmt: skip
    for g, losses in v["focal"].items():
        easy = losses[0] / v["focal"][0.0][0]
        lines.append(f"  gamma {g:>3g}: " + ", ".join(f"{x:.4f}" for x in losses)
                     + f"   easy example weighted {easy:.3g}x of its cross-entropy")  # fmt: skip
    hard = v["focal"][2.0][2] / v["focal"][0.0][2]
    lines.append(f"with gamma = 2 an easy example (p = 0.9) keeps 1/100 of its loss, a hard one (p = 0.1) {hard:.2f}")
    return "\n".join(lines)
