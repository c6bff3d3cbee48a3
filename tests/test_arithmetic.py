"""Tests for cnnlab.arithmetic: sizes, parameter counts and receptive fields, checked against torch."""

from __future__ import annotations

import itertools

import pytest

from cnnlab.arithmetic import (
    conv_macs,
    conv_output_size,
    conv_params,
    conv_transpose_output_size,
    effective_kernel,
    linear_params,
    parse_layers,
    pool_output_size,
    receptive_field,
    receptive_field_step,
    same_padding,
)
from cnnlab.errors import CnnlabError


@pytest.mark.parametrize(
    ("n", "k", "s", "p", "expected"),
    [(32, 5, 1, 0, 28), (32, 3, 1, 1, 32), (32, 3, 2, 1, 16), (5, 3, 1, 0, 3), (28, 3, 1, 0, 26)],
)
def test_conv_output_size_seed_examples(n, k, s, p, expected):
    # seed 002 "Output Size Calculation" examples and seed 004's 5x5 image with a 3x3 filter
    assert conv_output_size(n, k, s, p) == expected


def test_conv_output_size_matches_torch():
    torch = pytest.importorskip("torch")
    for n, k, s, p, d in itertools.product([5, 8, 13], [1, 2, 3, 5], [1, 2, 3], [0, 1, 2], [1, 2]):
        if n + 2 * p < d * (k - 1) + 1:
            with pytest.raises(CnnlabError):
                conv_output_size(n, k, s, p, d)
            continue
        out = torch.nn.functional.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), None, s, p, d)
        assert conv_output_size(n, k, s, p, d) == out.shape[-1], (n, k, s, p, d)


def test_pool_output_size_matches_torch_ceil_and_floor():
    torch = pytest.importorskip("torch")
    for n, k, s, p, ceil in itertools.product([4, 5, 7, 9], [2, 3], [1, 2, 3], [0, 1], [False, True]):
        pool = torch.nn.MaxPool2d(k, stride=s, padding=p, ceil_mode=ceil)
        expected = pool(torch.zeros(1, 1, n, n)).shape[-1]
        assert pool_output_size(n, k, s, p, ceil_mode=ceil) == expected, (n, k, s, p, ceil)


def test_pool_default_stride_is_kernel():
    assert pool_output_size(4, 2) == 2
    assert pool_output_size(32, 2) == 16


def test_too_small_input_names_the_numbers():
    with pytest.raises(CnnlabError, match=r"kernel 5.*input 3"):
        conv_output_size(3, 5)


def test_same_padding_keeps_size():
    for k, d in [(1, 1), (3, 1), (5, 1), (3, 2), (7, 3)]:
        p = same_padding(k, d)
        assert conv_output_size(17, k, 1, p, d) == 17
    with pytest.raises(CnnlabError, match="even"):
        same_padding(4)


def test_transposed_output_size_matches_torch():
    torch = pytest.importorskip("torch")
    for n, k, s, p, op in [(16, 4, 2, 1, 0), (7, 3, 2, 1, 1), (5, 3, 1, 0, 0), (8, 2, 2, 0, 0)]:
        layer = torch.nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, output_padding=op)
        assert conv_transpose_output_size(n, k, s, p, op) == layer(torch.zeros(1, 1, n, n)).shape[-1]


def test_params_match_torch_and_seed_numbers():
    torch = pytest.importorskip("torch")
    cases = [(3, 32, 3, True, 1), (32, 64, 3, True, 1), (8, 8, 3, False, 8), (4, 6, 1, True, 2)]
    for cin, cout, k, bias, groups in cases:
        layer = torch.nn.Conv2d(cin, cout, k, bias=bias, groups=groups)
        assert conv_params(cin, cout, k, bias, groups) == sum(p.numel() for p in layer.parameters())
    lin = torch.nn.Linear(2048, 512)
    assert linear_params(2048, 512) == sum(p.numel() for p in lin.parameters())
    # seed 000's per-layer counts for the seed CNN and seed 002's conv example, recomputed
    assert [conv_params(3, 32, 3), conv_params(32, 64, 3), conv_params(64, 128, 3)] == [896, 18_496, 73_856]
    assert conv_params(3, 64, 3) == 3 * 3 * 3 * 64 + 64


def test_conv_macs_counts_one_dot_product_per_output():
    # 3x3 conv, 3 -> 32 channels, 32x32 output: 32*32*32 outputs, each a dot product of 27
    assert conv_macs(3, 32, 3, 32) == 32 * 32 * 32 * 27
    assert conv_macs(8, 8, 3, 4, groups=8) == 8 * 4 * 4 * 9


def test_receptive_field_stacked_3x3():
    # seed 002: three stacked 3x3 convs see 3, 5, 7 pixels
    assert [rf for rf, _ in receptive_field([(3, 1), (3, 1), (3, 1)])] == [3, 5, 7]


def test_receptive_field_seed_cnn():
    # seed CNN: (conv3x3 p1 -> pool2) x 3; values per layer, see docs/seed-errata.md
    layers = [(3, 1), (2, 2)] * 3
    assert receptive_field(layers) == [(3, 1), (4, 2), (8, 2), (10, 4), (18, 4), (22, 8)]


def test_receptive_field_matches_brute_force_gradient():
    """The RF is the extent of input pixels with non-zero gradient w.r.t. the centre output."""
    torch = pytest.importorskip("torch")
    specs = [(3, 1, 1), (2, 2, 1), (3, 1, 2), (3, 2, 1)]
    x = torch.ones(1, 1, 64, 64, requires_grad=True)
    y = x
    for k, s, d in specs:
        conv = torch.nn.Conv2d(1, 1, k, stride=s, dilation=d, bias=False)
        torch.nn.init.constant_(conv.weight, 1.0)
        y = conv(y)
    y[0, 0, y.shape[-2] // 2, y.shape[-1] // 2].backward()
    cols = (x.grad[0, 0].abs().sum(0) > 0).nonzero().flatten()
    extent = int(cols.max() - cols.min() + 1)
    assert receptive_field(specs)[-1][0] == extent


def test_receptive_field_step_dilation():
    assert effective_kernel(3, 2) == 5
    assert receptive_field_step(1, 1, 3, 1, dilation=2) == (5, 1)
    assert receptive_field_step(10, 4, 3, 2) == (18, 8)


# --- the calc command ------------------------------------------------------------------------
def _calc(argv, capsys) -> str:
    import argparse

    from cnnlab.cli import calc

    parser = argparse.ArgumentParser()
    calc.add_parser(parser.add_subparsers())
    args = parser.parse_args(["calc", *argv])
    assert args.func(args) == 0
    return capsys.readouterr().out


@pytest.mark.slow
def test_calc_conv_prints_size_params_macs_and_formula(capsys):
    out = _calc(["conv", "--in", "32", "--k", "3", "--s", "1", "--p", "1", "--cin", "3", "--cout", "32"], capsys)
    assert "H_out = floor((32 + 2*1 - 3) / 1) + 1 = 32" in out
    assert f"= {conv_params(3, 32, 3):,}" in out and f"= {conv_macs(3, 32, 3, 32):,}" in out
    out = _calc(["conv", "--in", "28x32", "--k", "3", "--s", "2", "--p", "same", "--d", "2"], capsys)
    assert f"output size: {conv_output_size(28, 3, 2, 2, 2)}x{conv_output_size(32, 3, 2, 2, 2)}" in out


def test_calc_pool_and_transpose(capsys):
    assert "output size: 3x3" in _calc(["pool", "--in", "5", "--k", "2", "--ceil"], capsys)
    assert "output size: 2x2" in _calc(["pool", "--in", "5", "--k", "2"], capsys)
    assert "= 14" in _calc(["transpose", "--in", "7", "--k", "3", "--s", "2", "--p", "1", "--op", "1"], capsys)


def test_calc_rf_table_for_the_seed_cnn(capsys):
    out = _calc(["rf", "--layers", "conv3,pool2,conv3,pool2,conv3,pool2", "--in", "32"], capsys)
    rows = [line.split() for line in out.splitlines() if line[:2].strip().isdigit()]
    assert [int(r[6]) for r in rows] == [rf for rf, _ in receptive_field([(3, 1), (2, 2)] * 3)]
    assert [int(r[8]) for r in rows] == [32, 16, 16, 8, 8, 4]  # feature-map sizes with 'same' convs


def test_calc_rf_rejects_unreadable_layers():
    with pytest.raises(CnnlabError, match="convK or poolK"):
        parse_layers("conv3,fc10")
    assert parse_layers("conv3s2d2")[0] == {
        "name": "conv3s2d2", "kind": "conv", "kernel": 3, "stride": 2, "dilation": 2, "padding": 2,
    }  # fmt: skip
