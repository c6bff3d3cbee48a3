"""im2col/col2im, convolution and pooling of the NumPy engine against direct loop definitions."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.numpy_engine import functional as F


def conv_reference(x, w, b, stride, padding):
    """The definition, one output pixel at a time (slow, test only)."""
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    co, _, kh, kw = w.shape
    ho, wo = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    y = np.zeros((x.shape[0], co, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]  # (B, C, kh, kw)
            y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return y


@pytest.mark.parametrize(
    "shape,wshape,stride,padding",
    [
        ((2, 3, 7, 6), (4, 3, 3, 3), (1, 1), (0, 0)),
        ((2, 3, 7, 6), (4, 3, 3, 3), (1, 1), (1, 2)),
        ((2, 2, 9, 8), (3, 2, 5, 5), (2, 2), (2, 2)),
        ((1, 1, 6, 7), (2, 1, 2, 3), (3, 1), (0, 1)),
    ],
)
def test_conv2d_forward_matches_the_definition(shape, wshape, stride, padding):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(shape), rng.standard_normal(wshape), rng.standard_normal(wshape[0])
    y, _ = F.conv2d_forward(x, w, b, stride, padding)
    np.testing.assert_allclose(y, conv_reference(x, w, b, stride, padding), atol=1e-12)


@pytest.mark.parametrize("kernel,stride", [((3, 3), (1, 1)), ((3, 2), (2, 1)), ((2, 2), (2, 2)), ((2, 2), (3, 3))])
def test_col2im_is_the_adjoint_of_windows(kernel, stride):
    """<windows(x), g> == <x, col2im(g)> for all x, g: col2im is exactly the transpose of im2col."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 8, 7))
    win = F.windows(x, kernel, stride)
    g = rng.standard_normal(win.shape)
    lhs = float((win * g).sum())
    rhs = float((x * F.col2im(g, x.shape, kernel, stride)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_windows_is_a_view_not_a_copy():
    x = np.arange(2 * 3 * 6 * 6, dtype=np.float32).reshape(2, 3, 6, 6)
    win = F.windows(x, (3, 3), (1, 1))
    assert np.shares_memory(win, x)
    assert win[1, 2, 0, 1, 3, 2] == x[1, 2, 3, 3]


@pytest.mark.parametrize("kernel,stride,padding", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1))])
def test_maxpool_matches_the_definition(kernel, stride, padding):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 7))
    y, idx = F.maxpool2d_forward(x, kernel, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2), constant_values=-np.inf)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            win = xp[:, :, i * stride[0] : i * stride[0] + kernel[0], j * stride[1] : j * stride[1] + kernel[1]]
            flat = win.reshape(2, 3, -1)
            np.testing.assert_array_equal(y[:, :, i, j], flat.max(axis=2))
            np.testing.assert_array_equal(idx[:, :, i, j], flat.argmax(axis=2))


def test_maxpool_all_equal_window_picks_top_left_in_both_paths():
    x = np.zeros((1, 1, 4, 4))
    for stride in [(2, 2), (1, 1)]:  # tile fast path and the general overlapping path
        y, idx = F.maxpool2d_forward(x, (2, 2), stride, (0, 0))
        assert np.all(idx == 0) and np.all(y == 0)


def test_stable_softmax_handles_huge_logits():
    z = np.array([[1000.0, 1000.0, -1000.0]], dtype=np.float32)
    p = F.softmax(z)
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0]], atol=1e-7)
    assert np.isfinite(F.log_softmax(z)[0, :2]).all()


def test_float32_stays_float32():
    x = np.ones((2, 1, 6, 6), dtype=np.float32)
    w = np.ones((2, 1, 3, 3), dtype=np.float32)
    y, _ = F.conv2d_forward(x, w, np.zeros(2, np.float32), (1, 1), (1, 1))
    assert y.dtype == np.float32
    assert F.avgpool2d_forward(x, (2, 2), (2, 2), (0, 0)).dtype == np.float32


@pytest.mark.parametrize("padding", [(0, 0), (1, 0), (2, 1)])
def test_conv_input_gradient_is_a_full_convolution_with_the_flipped_kernel(padding):
    """docs/learn/backprop.md: for stride 1, dX = conv(dY padded by k-1-p, W rotated 180 deg, channels swapped)."""
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
    y, cache = F.conv2d_forward(x, w, None, (1, 1), padding)
    dy = rng.standard_normal(y.shape)
    dx, _, _ = F.conv2d_backward(dy, cache, w, x.shape, (1, 1), padding)
    w_flipped = w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]  # (C, Co, kh, kw), rotated by 180 degrees
    full = (3 - 1 - padding[0], 3 - 1 - padding[1])  # k - 1 - p on each side
    as_conv, _ = F.conv2d_forward(dy, np.ascontiguousarray(w_flipped), None, (1, 1), full)
    np.testing.assert_allclose(dx, as_conv, atol=1e-12)
