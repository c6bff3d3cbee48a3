"""Losses: focal against its formula, class weights from counts, L1/L2 penalties, registry."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.engine.losses import LOSSES, build_loss, class_weights, weight_penalty


def test_focal_loss_matches_the_formula_and_reduces_to_cross_entropy():
    torch.manual_seed(0)
    logits, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    p_t = F.softmax(logits, 1)[torch.arange(8), y]
    expected = (0.25 * (1 - p_t) ** 2 * -torch.log(p_t)).mean()
    assert torch.allclose(build_loss("focal", gamma=2.0, alpha=0.25)(logits, y), expected, atol=1e-6)
    assert torch.allclose(build_loss("focal", gamma=0.0)(logits, y), F.cross_entropy(logits, y), atol=1e-6)
    # easy examples lose more weight than hard ones
    ce = F.cross_entropy(logits, y, reduction="none")
    ratio = (1 - p_t) ** 2
    assert ratio[p_t.argmax()] < ratio[p_t.argmin()] and ce.shape == (8,)


def test_class_weights_balance_the_expected_contribution():
    w = class_weights([90, 10, 0])
    counts = torch.tensor([90.0, 10.0, 0.0])
    assert w[2] == 0 and torch.allclose(w[:2] * counts[:2], torch.full((2,), 100 / 3))
    logits, y = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 0, 1])
    weighted = build_loss("cross_entropy", weight=w)(logits, y)
    assert torch.allclose(weighted, F.cross_entropy(logits, y, weight=w))


def test_weight_penalty_counts_weights_not_biases():
    m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0]]))
    assert weight_penalty(m) is None
    assert float(weight_penalty(m, l1=0.1)) == pytest.approx(0.1 * 3.5)
    assert float(weight_penalty(m, l2=0.1)) == pytest.approx(0.1 * 5.25)
    assert set(LOSSES.names()) >= {"cross_entropy", "focal"}
