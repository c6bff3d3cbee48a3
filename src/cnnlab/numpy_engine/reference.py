"""Convolution and pooling written as plain loops, forward and backward: the definitions, readable
line by line, and the oracle the tests hold the fast engine (:mod:`cnnlab.numpy_engine.functional`,
im2col and strided views) to.

Nothing here is vectorised beyond one window's element-wise product, so each line is one term of
the formulas in ``docs/learn/backprop.md``:

* forward:  ``y[b, o, i, j] = bias[o] + sum_{c, m, n} xp[b, c, i*s + m, j*s + n] * w[o, c, m, n]``
  (``xp`` is ``x`` zero-padded by ``p`` on each side),
* backward: every term of that sum is a product of one input pixel and one weight, so
  ``dw[o, c, m, n] += dy[b, o, i, j] * xp[b, c, i*s + m, j*s + n]`` and
  ``dxp[b, c, i*s + m, j*s + n] += dy[b, o, i, j] * w[o, c, m, n]``, and ``db[o] += dy[b, o, i, j]``,
* max pooling passes each window's gradient to the one pixel that won it (the first maximum in
  row-major order, as torch does); average pooling shares it equally among the window's pixels.

They are slow (a 28x28 image with 32 filters is ~200,000 Python-level multiplications): use them
to learn and to test, and the functional versions to train.
"""

from __future__ import annotations

import numpy as np


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Cross-correlation of ``x`` (B, C, H, W) with ``w`` (Co, C, k, k): returns (B, Co, Ho, Wo)."""
    B, C, H, W = x.shape
    Co, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))  # zeros around each image
    Ho, Wo = (H + 2 * padding - k) // stride + 1, (W + 2 * padding - k) // stride + 1
    y = np.zeros((B, Co, Ho, Wo), dtype=np.result_type(x, w))
    for bi in range(B):
        for o in range(Co):
            for i in range(Ho):
                for j in range(Wo):
                    window = xp[bi, :, i * stride : i * stride + k, j * stride : j * stride + k]  # (C, k, k)
                    y[bi, o, i, j] = np.sum(window * w[o]) + (b[o] if b is not None else 0.0)
    return y


def conv2d_backward(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int = 1, padding: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d` given ``dy`` = dL/dy (B, Co, Ho, Wo): returns ``(dx, dw, db)``."""
    B, C, H, W = x.shape
    Co, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxp, dw, db = np.zeros_like(xp), np.zeros_like(w), np.zeros(Co, dtype=dy.dtype)
    _, _, Ho, Wo = dy.shape
    for bi in range(B):
        for o in range(Co):
            for i in range(Ho):
                for j in range(Wo):
                    g = dy[bi, o, i, j]  # how much the loss moves per unit of this output
                    rows, cols = slice(i * stride, i * stride + k), slice(j * stride, j * stride + k)
                    dw[o] += g * xp[bi, :, rows, cols]  # each weight met this window's pixels
                    dxp[bi, :, rows, cols] += g * w[o]  # each pixel met these weights
                    db[o] += g  # the bias was added once per output
    return dxp[:, :, padding : padding + H, padding : padding + W], dw, db


def _pool_windows(x: np.ndarray, k: int, stride: int):
    """Yield ``(b, c, i, j, rows, cols)`` for every pooling window of ``x`` (B, C, H, W), no padding."""
    B, C, H, W = x.shape
    for bi in range(B):
        for c in range(C):
            for i in range((H - k) // stride + 1):
                for j in range((W - k) // stride + 1):
                    yield bi, c, i, j, slice(i * stride, i * stride + k), slice(j * stride, j * stride + k)


def _pool_shape(x: np.ndarray, k: int, stride: int) -> tuple[int, int, int, int]:
    B, C, H, W = x.shape
    return B, C, (H - k) // stride + 1, (W - k) // stride + 1


def maxpool2d(x: np.ndarray, k: int = 2, stride: int | None = None) -> np.ndarray:
    """Max of each k x k window: (B, C, H, W) -> (B, C, Ho, Wo)."""
    stride = stride or k
    y = np.zeros(_pool_shape(x, k, stride), dtype=x.dtype)
    for bi, c, i, j, rows, cols in _pool_windows(x, k, stride):
        y[bi, c, i, j] = x[bi, c, rows, cols].max()
    return y


def maxpool2d_backward(dy: np.ndarray, x: np.ndarray, k: int = 2, stride: int | None = None) -> np.ndarray:
    """Route each window's gradient to the pixel that won it (the first maximum, row by row)."""
    stride = stride or k
    dx = np.zeros_like(x)
    for bi, c, i, j, rows, cols in _pool_windows(x, k, stride):
        m, n = np.unravel_index(np.argmax(x[bi, c, rows, cols]), (k, k))  # argmax: the first maximum
        dx[bi, c, rows.start + m, cols.start + n] += dy[bi, c, i, j]
    return dx


def avgpool2d(x: np.ndarray, k: int = 2, stride: int | None = None) -> np.ndarray:
    """Mean of each k x k window: (B, C, H, W) -> (B, C, Ho, Wo)."""
    stride = stride or k
    y = np.zeros(_pool_shape(x, k, stride), dtype=x.dtype)
    for bi, c, i, j, rows, cols in _pool_windows(x, k, stride):
        y[bi, c, i, j] = x[bi, c, rows, cols].mean()
    return y


def avgpool2d_backward(dy: np.ndarray, x: np.ndarray, k: int = 2, stride: int | None = None) -> np.ndarray:
    """Each pixel of a window receives 1/(k*k) of the window's gradient."""
    stride = stride or k
    dx = np.zeros_like(x)
    for bi, c, i, j, rows, cols in _pool_windows(x, k, stride):
        dx[bi, c, rows, cols] += dy[bi, c, i, j] / (k * k)
    return dx
