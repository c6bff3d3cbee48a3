"""Weight initialisation: the spread of each scheme, and the symmetry problem of zero init."""

import math

import pytest
import torch
from torch import nn

from cnnlab.engine.init import INITS, init_weights

STDS = {  # fan_in 400, fan_out 200 for Linear(400, 200)
    "he_normal": math.sqrt(2 / 400),
    "he_uniform": math.sqrt(6 / 400) / math.sqrt(3),
    "xavier_normal": math.sqrt(2 / 600),
    "xavier_uniform": math.sqrt(6 / 600) / math.sqrt(3),
    "lecun_normal": math.sqrt(1 / 400),
    "lecun_uniform": math.sqrt(3 / 400) / math.sqrt(3),
}


@pytest.mark.parametrize("scheme", sorted(STDS))
def test_scheme_std(scheme):
    torch.manual_seed(0)
    layer = init_weights(nn.Sequential(nn.Linear(400, 200)), scheme)[0]
    assert float(layer.weight.detach().std()) == pytest.approx(STDS[scheme], rel=0.05)
    assert float(layer.bias.detach().abs().max()) == 0.0


def test_zero_init_keeps_every_hidden_unit_identical():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6 * 6, 3))
    model[0].bias.data.normal_()  # not even different biases help once all weights are equal
    init_weights(model, "zero")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))
    for _ in range(20):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = model[0].weight.detach()  # (6, 1, 3, 3): every filter the same as the first
    assert torch.equal(w, w[:1].expand_as(w))
    assert model[3].bias.detach().abs().sum() > 0  # the output bias did learn: training happened
    assert "default" in INITS and init_weights(model, "default") is model
