"""Loss registry. ``cross_entropy`` is softmax + negative log-likelihood in one stable step."""

from __future__ import annotations

from torch import nn

from cnnlab.registry import Registry

LOSSES: Registry = Registry("loss")


@LOSSES.register("cross_entropy")
def cross_entropy(label_smoothing: float = 0.0, weight=None) -> nn.Module:
    """Cross-entropy on logits (log-sum-exp form, no explicit softmax), optional label smoothing."""
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing, weight=weight)


def build_loss(name: str = "cross_entropy", **kw) -> nn.Module:
    return LOSSES.create(name, **kw)
