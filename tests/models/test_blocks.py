"""cnnlab.models.blocks: conv helpers and the activation/normalisation/pooling registries."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.arithmetic import conv_params
from cnnlab.errors import CnnlabError
from cnnlab.models.blocks import (
    ACTIVATIONS,
    NORMS,
    POOLS,
    ConvNormAct,
    DepthwiseSeparableConv,
    SqueezeExcite,
    conv1x1,
    conv3x3,
    dilated_conv,
    make_activation,
    make_norm,
    make_pool,
    strided_conv,
    transposed_conv,
)
from cnnlab.models.summary import summary

X = torch.randn(2, 8, 16, 16)


def test_conv_helpers_shapes():
    assert conv1x1(8, 4)(X).shape == (2, 4, 16, 16)
    assert conv3x3(8, 4)(X).shape == (2, 4, 16, 16)
    assert dilated_conv(8, 4, dilation=2)(X).shape == (2, 4, 16, 16)
    assert strided_conv(8, 4)(X).shape == (2, 4, 8, 8)
    assert transposed_conv(8, 4)(X).shape == (2, 4, 32, 32)


def test_one_by_one_conv_weights_match_the_seed_example():
    assert sum(p.numel() for p in conv1x1(256, 64).parameters()) == 256 * 64  # seed 002: 16,384


def test_dilated_conv_sees_5x5_with_9_weights():
    s = summary(nn.Sequential(dilated_conv(1, 1, 3, dilation=2)), (1, 9, 9))
    assert s.rows[0].rf == 5
    assert s.total_params == 9


def test_depthwise_separable_is_cheaper_than_a_full_conv():
    block = DepthwiseSeparableConv(32, 64)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in convs] == [32, 1]
    separable = sum(c.weight.numel() for c in convs)
    assert separable == conv_params(32, 32, 3, bias=False, groups=32) + conv_params(32, 64, 1, bias=False)
    # ratio 1 / (1/C_out + 1/k^2) = 7.9 for C_out = 64, k = 3 (Howard et al. 2017, section 3.1)
    assert conv_params(32, 64, 3, bias=False) / separable == pytest.approx(1 / (1 / 64 + 1 / 9))
    assert block(torch.randn(1, 32, 8, 8)).shape == (1, 64, 8, 8)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh", "silu", "swish", "gelu"])
def test_activations_apply_elementwise(name):
    act = make_activation(name)
    x = torch.linspace(-3, 3, 7)
    reference = {
        "relu": torch.relu,
        "leaky_relu": lambda t: nn.functional.leaky_relu(t, 0.01),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "silu": nn.functional.silu,
        "swish": lambda t: t * torch.sigmoid(t),
        "gelu": nn.functional.gelu,
    }[name]
    assert torch.allclose(act(x), reference(x), atol=1e-6)
    assert name in ACTIVATIONS


@pytest.mark.parametrize("name", ["batch", "layer", "group", "instance"])
def test_norms_normalise_feature_maps(name):
    norm = make_norm(name, 8, groups=4) if name == "group" else make_norm(name, 8)
    y = norm.train()(X * 5 + 3)
    assert y.shape == X.shape
    assert abs(y.mean().item()) < 1e-4  # every variant centres (over its own axes)
    assert name in NORMS


def test_norms_on_flat_features_and_errors():
    assert isinstance(make_norm("batch", 8, dim=1), nn.BatchNorm1d)
    assert isinstance(make_norm("layer", 8, dim=1), nn.LayerNorm)
    with pytest.raises(CnnlabError, match="groups"):
        make_norm("group", 10, groups=4)
    with pytest.raises(CnnlabError, match="unknown normalisation"):
        make_norm("batchy", 8)


@pytest.mark.parametrize(
    ("name", "shape"), [("max", (2, 8, 8, 8)), ("avg", (2, 8, 8, 8)), ("global_avg", (2, 8, 1, 1))]
)
def test_pools(name, shape):
    assert make_pool(name)(X).shape == shape
    assert name in POOLS


def test_global_max_pool_takes_the_maximum():
    assert torch.equal(make_pool("global_max")(X).flatten(1), X.amax(dim=(2, 3)))


def test_conv_norm_act_has_no_bias_before_norm():
    block = ConvNormAct(3, 4, norm="batch", act="gelu")
    assert block[0].bias is None and isinstance(block[2], nn.GELU)
    assert ConvNormAct(3, 4, norm=None)[0].bias is not None


def test_squeeze_excite_rescales_channels_with_gates_in_0_1():
    se = SqueezeExcite(8, reduction=4)
    x = X.abs()
    y = se(x)
    # one gate per (sample, channel), the same at every pixel; estimated from channel sums, which
    # (unlike a per-pixel ratio) cannot blow up where x is close to zero
    gate = y.sum((2, 3)) / x.sum((2, 3))
    assert torch.allclose(y, x * gate[..., None, None], atol=1e-6)
    assert ((gate > 0) & (gate < 1)).all()
