"""Layers of the NumPy engine, named like torch, each with an explicit ``forward`` and ``backward``.

Every layer works on whole batches (seed 003 processed one single-channel image at a time) and keeps
the dtype of its parameters: float32 for training, float64 for gradient checks (``model.astype``).
``forward`` caches exactly what ``backward`` needs; ``backward(dy)`` receives dL/d(output), adds
parameter gradients into ``Parameter.grad`` and returns dL/d(input). The derivation of each backward
pass is in ``docs/learn/backprop.md``.
"""

from __future__ import annotations

import numpy as np

from cnnlab.numpy_engine import functional as F
from cnnlab.numpy_engine.model import Module, Parameter, default_rng, init_weight


class Conv2d(Module):
    """2-D convolution (cross-correlation) over (B, C, H, W) with weight (O, C, kh, kw), via im2col + matmul."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        init: str = "he",
        dtype: np.dtype | type = np.float32,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = F.pair(kernel_size), F.pair(stride), F.pair(padding)
        shape = (out_channels, in_channels, *self.kernel_size)
        self.params["weight"] = Parameter(init_weight(shape, init, dtype, rng))
        if bias:
            self.params["bias"] = Parameter(np.zeros(out_channels, dtype=dtype))
        self._cache: tuple | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        b = self.params.get("bias")
        y, cache = F.conv2d_forward(
            x, self.params["weight"].data, None if b is None else b.data, self.stride, self.padding
        )
        self._cache = (cache, x.shape)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        cache, x_shape = self._cache
        w = self.params["weight"]
        dx, dw, db = F.conv2d_backward(dy, cache, w.data, x_shape, self.stride, self.padding, self.needs_input_grad)
        w.accumulate(dw)
        if "bias" in self.params:
            self.params["bias"].accumulate(db)
        return dx

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )


class Linear(Module):
    """y = x @ W.T + b with W (out, in), like torch.nn.Linear."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: str = "he",
        dtype: np.dtype | type = np.float32,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.params["weight"] = Parameter(init_weight((out_features, in_features), init, dtype, rng))
        if bias:
            self.params["bias"] = Parameter(np.zeros(out_features, dtype=dtype))
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x  # (B, in)
        y = x @ self.params["weight"].data.T  # (B, out)
        if "bias" in self.params:
            y += self.params["bias"].data
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        w = self.params["weight"]
        w.accumulate(dy.T @ self._x)  # (out, B) @ (B, in)
        if "bias" in self.params:
            self.params["bias"].accumulate(dy.sum(axis=0))
        return dy @ w.data if self.needs_input_grad else None  # (B, out) @ (out, in)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class _Pool2d(Module):
    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ):
        super().__init__()
        self.kernel_size = F.pair(kernel_size)
        self.stride = F.pair(stride) if stride is not None else self.kernel_size  # torch: stride defaults to kernel
        self.padding = F.pair(padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max pooling. Ties: the first maximum in row-major window order wins (see ``F.maxpool2d_forward``)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, idx = F.maxpool2d_forward(x, self.kernel_size, self.stride, self.padding)
        self._cache = (idx, x.shape)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        idx, x_shape = self._cache
        return F.maxpool2d_backward(dy, idx, x_shape, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Average pooling (zero padding included in the count, as torch's default)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x_shape = x.shape
        return F.avgpool2d_forward(x, self.kernel_size, self.stride, self.padding)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return F.avgpool2d_backward(dy, self._x_shape, self.kernel_size, self.stride, self.padding)


class GlobalAvgPool2d(Module):
    """Mean over H and W: (B, C, H, W) -> (B, C). torch equivalent: AdaptiveAvgPool2d(1) + Flatten."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x_shape = x.shape
        return x.mean(axis=(2, 3), dtype=x.dtype)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        B, C, H, W = self._x_shape
        return np.broadcast_to((dy / (H * W))[:, :, None, None], self._x_shape).copy()


class Flatten(Module):
    """(B, ...) -> (B, prod(...)), like torch.nn.Flatten()."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy.reshape(self._x_shape)


# ----------------------------------------------------------------------------------------------
# Activations
# ----------------------------------------------------------------------------------------------


class ReLU(Module):
    """max(x, 0); the derivative at exactly 0 is taken as 0 (as torch does)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = np.maximum(x, 0)
        self._y = y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy * (self._y > 0)


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._pos = x > 0
        return np.where(self._pos, x, x * self.negative_slope)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return np.where(self._pos, dy, dy * self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """1 / (1 + exp(-x)), computed without overflow; derivative y (1 - y)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        # exp of a non-positive number only: exp(-|x|) never overflows
        e = np.exp(-np.abs(x))
        y = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        self._y = y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy * self._y * (1 - self._y)


class Tanh(Module):
    """tanh(x); derivative 1 - y^2."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = np.tanh(x)
        return self._y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy * (1 - self._y * self._y)


class Dropout(Module):
    """Inverted dropout: in training, zero each value with probability p and scale the rest by 1/(1-p),
    so evaluation is the identity. The mask comes from ``rng`` (default: the engine generator)."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0:
            self._scale = None
            return x
        rng = self.rng or default_rng()
        keep = rng.random(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64) >= self.p
        self._scale = keep * np.asarray(1 / (1 - self.p), dtype=x.dtype)  # (same shape as x)
        return x * self._scale

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy if self._scale is None else dy * self._scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


# ----------------------------------------------------------------------------------------------
# Batch normalisation
# ----------------------------------------------------------------------------------------------


class _BatchNorm(Module):
    """Shared code; subclasses set ``axes`` (the reduction axes) and ``ndim`` (the input rank).

    Training: normalise with the batch mean and biased variance, and update running statistics with
    ``momentum`` (running_var uses the unbiased variance, as torch). Evaluation: use the running ones.
    """

    axes: tuple[int, ...] = (0,)
    ndim = 2

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, dtype=np.float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.params["weight"] = Parameter(np.ones(num_features, dtype=dtype))
        self.params["bias"] = Parameter(np.zeros(num_features, dtype=dtype))
        self.buffers["running_mean"] = np.zeros(num_features, dtype=dtype)
        self.buffers["running_var"] = np.ones(num_features, dtype=dtype)
        self.buffers["num_batches_tracked"] = np.zeros((), dtype=np.int64)

    def _bshape(self) -> tuple[int, ...]:
        return (1, self.num_features) + (1,) * (self.ndim - 2)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != self.ndim:
            raise ValueError(f"{type(self).__name__} expects a {self.ndim}-D input, got shape {x.shape}")
        s = self._bshape()
        gamma, beta = self.params["weight"].data.reshape(s), self.params["bias"].data.reshape(s)
        if self.training:
            n = x.size // self.num_features
            mean = x.mean(axis=self.axes, keepdims=True)
            xc = x - mean
            var = (xc * xc).mean(axis=self.axes, keepdims=True)
            inv = 1 / np.sqrt(var + self.eps)
            xhat = xc * inv
            m = self.momentum
            rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
            rm *= 1 - m
            rm += m * mean.reshape(-1)
            rv *= 1 - m
            rv += m * var.reshape(-1) * (n / max(n - 1, 1))
            self.buffers["num_batches_tracked"] += 1
            self._cache = (xhat, inv, n)
        else:
            inv = 1 / np.sqrt(self.buffers["running_var"].reshape(s) + self.eps)
            xhat = (x - self.buffers["running_mean"].reshape(s)) * inv
            self._cache = (xhat, inv, None)
        return xhat * gamma + beta

    def backward(self, dy: np.ndarray) -> np.ndarray:
        xhat, inv, n = self._cache
        s = self._bshape()
        gamma = self.params["weight"].data.reshape(s)
        self.params["weight"].accumulate((dy * xhat).sum(axis=self.axes))
        self.params["bias"].accumulate(dy.sum(axis=self.axes))
        dxhat = dy * gamma
        if n is None:  # eval mode: statistics are constants
            return dxhat * inv
        # batch statistics depend on x: dx = inv/n * (n*dxhat - sum(dxhat) - xhat*sum(dxhat*xhat))
        sum_d = dxhat.sum(axis=self.axes, keepdims=True)
        sum_dx = (dxhat * xhat).sum(axis=self.axes, keepdims=True)
        return (inv / n) * (n * dxhat - sum_d - xhat * sum_dx)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch norm over features of a (B, F) input."""

    axes = (0,)
    ndim = 2


class BatchNorm2d(_BatchNorm):
    """Batch norm per channel of a (B, C, H, W) input (statistics over B, H, W)."""

    axes = (0, 2, 3)
    ndim = 4
