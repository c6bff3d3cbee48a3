"""Loss registry, class weights for imbalanced data, and L1/L2 weight penalties.

* ``cross_entropy``: softmax + negative log-likelihood in one stable log-sum-exp step, with optional
  label smoothing (Szegedy et al. 2016) and per-class weights.
* ``focal``: FL = -alpha_t (1 - p_t)^gamma log p_t (Lin et al. 2017; seed 002 "Class Imbalance"):
  easy examples (p_t near 1) are down-weighted so training concentrates on hard ones; gamma 0 and
  no alpha give plain cross-entropy.
* :func:`class_weights`: weights n / (K * n_k) from class counts, so every class contributes equally
  in expectation (``--balance weights``; ``--balance sampler`` samples instead, see data.loaders).
* :func:`weight_penalty`: ``l1 * sum|w| + l2 * sum w^2`` over weight tensors (seed 002 "L1/L2
  Regularization"), added to the data loss; biases and normalisation parameters are left out.

MixUp/CutMix targets are handled by the loop as ``lam * loss(y_a) + (1 - lam) * loss(y_b)``, which
works with every loss here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.splits import balanced_class_weights
from cnnlab.registry import Registry

LOSSES: Registry = Registry("loss")


@LOSSES.register("cross_entropy")
def cross_entropy(label_smoothing: float = 0.0, weight=None, **_) -> nn.Module:
    """Cross-entropy on logits, optional label smoothing and class weights."""
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing, weight=weight)


class FocalLoss(nn.Module):
    """Focal loss on logits (B, K) and integer targets (B,), mean over the batch."""

    def __init__(self, gamma: float = 2.0, alpha: float | None = None, weight=None, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma, self.alpha, self.label_smoothing = gamma, alpha, label_smoothing
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)  # (B, K)
        logp_t = logp.gather(1, target[:, None])[:, 0]  # (B,)
        ce = F.nll_loss(logp, target, reduction="none")  # -log p_t
        if self.label_smoothing:
            ce = (1 - self.label_smoothing) * ce - self.label_smoothing * logp.mean(1)
        loss = (1 - logp_t.exp()).clamp_min(0) ** self.gamma * ce
        if self.alpha is not None:  # binary-style alpha: alpha for every class (as in the paper's K-way use)
            loss = self.alpha * loss
        if self.weight is not None:
            w = self.weight[target]
            return (loss * w).sum() / w.sum()
        return loss.mean()


@LOSSES.register("focal")
def focal(label_smoothing: float = 0.0, weight=None, gamma: float = 2.0, alpha: float | None = None, **_) -> nn.Module:
    """Focal loss (gamma focusing, alpha weight)."""
    return FocalLoss(gamma=gamma, alpha=alpha, weight=weight, label_smoothing=label_smoothing)


def build_loss(name: str = "cross_entropy", **kw) -> nn.Module:
    return LOSSES.create(name, **kw)


def class_weights(counts: Sequence[int]) -> torch.Tensor:
    """n / (K * n_k) per class as a tensor (see ``data.splits.balanced_class_weights``); empty classes 0."""
    return torch.tensor(balanced_class_weights(counts), dtype=torch.float32)


def balance_summary(mode: str, train_counts: list[int]) -> dict:
    """What was done about class imbalance, for data.json, the log and the report."""
    what = {
        "none": "nothing (plain loss, uniform sampling)",
        "weights": "class-weighted loss, weight n / (K * n_k) per class",
        "sampler": "class-balanced sampling: each class drawn equally often",
    }.get(mode, mode)
    out: dict = {"mode": mode, "applied": what, "train_counts": train_counts}
    if mode == "weights":
        out["class_weights"] = [round(w, 6) for w in balanced_class_weights(train_counts)]
    return out


def weight_penalty(model: nn.Module, l1: float = 0.0, l2: float = 0.0) -> torch.Tensor | None:
    """``l1 * sum|w| + l2 * sum w^2`` over weight tensors with 2+ dimensions (None when both are 0)."""
    if not l1 and not l2:
        return None
    weights = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    total = 0.0
    if l1:
        total = total + l1 * sum(p.abs().sum() for p in weights)
    if l2:
        total = total + l2 * sum(p.pow(2).sum() for p in weights)
    return total
