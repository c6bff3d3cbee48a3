"""Graders for the notebooks' coding exercises: the student writes a convolution forward pass, a max-pool
backward pass, a batch-norm forward pass and the softmax-cross-entropy gradient; :func:`grade` runs it
on inputs drawn here and compares it with the NumPy engine's reference, so the expected numbers never
appear in the notebook.

A grade is one printed line: "exercise NAME: correct", "not answered yet" (the stub still raises
``NotImplementedError``), or "not quite: ..." with what differs and, where the output matches a
common slip (a flipped kernel, a missing bias, the gradient spread over the whole window, the
unbiased variance, the mean forgotten), the slip by name. CS231n's assignments ask for the same four
pieces; the references are :mod:`cnnlab.numpy_engine.reference` (plain loops) and the engine's layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnlab.numpy_engine import reference as R
from cnnlab.registry import Registry

GRADERS: Registry = Registry("exercise")
TOL = 1e-6


def _close(a: Any, b: np.ndarray) -> bool:
    a = np.asarray(a, dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=TOL, atol=TOL))


def _diff(got: Any, want: np.ndarray, what: str) -> str:
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        return f"{what} has shape {got.shape}, expected {want.shape}"
    i = np.unravel_index(np.abs(got - want).argmax(), want.shape)
    return f"{what} differs most at index {tuple(int(n) for n in i)}: got {got[i]:.6g}, expected {want[i]:.6g}"


def _first_slip(got: Any, slips: dict[str, np.ndarray]) -> str | None:
    return next((why for why, wrong in slips.items() if _close(got, wrong)), None)


@GRADERS.register("conv2d_forward")
def _conv(fn: Callable) -> str | None:
    """``fn(x (B, C, H, W), w (Co, C, k, k), b (Co,), stride, padding) -> (B, Co, Ho, Wo)``."""
    rng = np.random.default_rng(29)
    for stride, padding, k in ((1, 0, 3), (2, 1, 3), (1, 2, 5)):
        x, w, b = rng.normal(size=(2, 3, 7, 6)), rng.normal(size=(4, 3, k, k)), rng.normal(size=4)
        want = R.conv2d(x, w, b, stride, padding)
        got = fn(x, w, b, stride, padding)
        if not _close(got, want):
            flipped = R.conv2d(x, w[..., ::-1, ::-1], b, stride, padding)
            slips = {
                "the kernel is flipped: CNN layers compute cross-correlation, w[m, n] times x[i + m, j + n]": flipped,
                "the bias is missing (add b[o] to every output of filter o)": R.conv2d(x, w, None, stride, padding),
                "the padding is ignored (pad x with zeros on all four sides first)": R.conv2d(x, w, b, stride, 0),
            }
            hint = _first_slip(got, slips) or _diff(got, want, "the output")
            return f"with stride {stride}, padding {padding}, kernel {k}: {hint}"
    return None


@GRADERS.register("maxpool2d_backward")
def _maxpool(fn: Callable) -> str | None:
    """``fn(dy (B, C, Ho, Wo), x (B, C, H, W), k) -> dx (B, C, H, W)`` for k x k windows with stride k."""
    rng = np.random.default_rng(29)
    for k, size in ((2, 6), (3, 6)):
        x = rng.normal(size=(2, 3, size, size))  # continuous values: no ties inside a window
        dy = rng.normal(size=(2, 3, size // k, size // k))
        want = R.maxpool2d_backward(dy, x, k)
        got = fn(dy, x, k)
        if not _close(got, want):
            spread = R.avgpool2d_backward(dy, x, k)
            slips = {
                "the gradient is shared by the whole window; it belongs to the one input that was the max": spread,
                "the gradient is copied to every input of the window, not only to the max": spread * k * k,
            }
            return f"with {k}x{k} windows: " + (_first_slip(got, slips) or _diff(got, want, "dx"))
    return None


def _batchnorm_reference(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, ddof: int = 0):
    mean = x.mean(axis=(0, 2, 3), keepdims=True)  # one mean per channel, over batch and positions
    var = x.var(axis=(0, 2, 3), keepdims=True, ddof=ddof)
    return gamma[None, :, None, None] * (x - mean) / np.sqrt(var + eps) + beta[None, :, None, None]


@GRADERS.register("batchnorm_forward")
def _batchnorm(fn: Callable) -> str | None:
    """``fn(x (N, C, H, W), gamma (C,), beta (C,), eps) -> y`` in training mode (the batch's statistics)."""
    from cnnlab.numpy_engine.layers import BatchNorm2d

    rng = np.random.default_rng(29)
    x = rng.normal(3.0, 2.0, size=(4, 3, 5, 5))
    gamma, beta, eps = rng.normal(1.0, 0.3, 3), rng.normal(0.0, 0.5, 3), 1e-5
    layer = BatchNorm2d(3, eps=eps, dtype=np.float64)
    layer.params["weight"].data[:], layer.params["bias"].data[:] = gamma, beta
    want = layer.forward(x)  # the engine's layer, training mode
    got = fn(x, gamma, beta, eps)
    if _close(got, want):
        return None
    per_sample = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / np.sqrt(x.var(axis=(1, 2, 3), keepdims=True) + eps)
    slips = {
        "the variance is the unbiased one (divide by N*H*W, not N*H*W - 1, as batch norm does)":
            _batchnorm_reference(x, gamma, beta, eps, ddof=1),
        "the statistics are per image; batch norm takes one mean and variance per channel, over N, H and W":
            gamma[None, :, None, None] * per_sample + beta[None, :, None, None],
        "gamma and beta are not applied (y = gamma * x_hat + beta)":
            _batchnorm_reference(x, np.ones_like(gamma), np.zeros_like(beta), eps),
    }  # fmt: skip
    return _first_slip(got, slips) or _diff(got, want, "y")


@GRADERS.register("softmax_cross_entropy_grad")
def _softmax_ce(fn: Callable) -> str | None:
    """``fn(logits (N, K), labels (N,)) -> d mean_loss / d logits (N, K)``."""
    from cnnlab.numpy_engine.losses import CrossEntropyLoss

    rng = np.random.default_rng(29)
    logits, labels = rng.normal(0, 3, size=(5, 4)), rng.integers(0, 4, 5)
    loss = CrossEntropyLoss()
    loss.forward(logits, labels)
    want = loss.backward()
    got = fn(logits, labels)
    if _close(got, want):
        return None
    slips = {
        "this is the gradient of the summed loss: divide by the batch size N (the loss is a mean)": want * len(labels),
        "the sign is flipped: the gradient is softmax(z) - onehot(y), not onehot(y) - softmax(z)": -want,
    }
    return _first_slip(got, slips) or _diff(got, want, "the gradient")


def grade(name: str, fn: Callable) -> bool:
    """Run exercise ``name`` on ``fn``, print one line, and return whether it is correct."""
    check = GRADERS.get(name)
    try:
        problem = check(fn)
    except NotImplementedError:
        print(f"exercise {name}: not answered yet (replace `raise NotImplementedError` with your code)")
        return False
    except Exception as exc:  # a student's code may fail in any way; say how, in one line
        print(f"exercise {name}: not quite, your function raised {type(exc).__name__}: {exc}")
        return False
    print(f"exercise {name}: correct" if problem is None else f"exercise {name}: not quite, {problem}")
    return problem is None
