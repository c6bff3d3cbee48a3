"""Finite-difference gradient checks for every layer and the loss of the NumPy engine.

A backward pass is only trustworthy once it agrees with the definition of the derivative. For a
layer f we check the scalar ``L = sum(f(x) * g)`` with a fixed random ``g`` (so dL/dy = g, every
output element matters): the analytic gradients from ``backward(g)`` must match central
differences ``(L(x + h e_i) - L(x - h e_i)) / 2h`` for every element of the input and of every
parameter, in float64, with the pass rule ``|analytic - numeric| <= 1e-5 + 1e-3 * |numeric|``.
Shapes are small and odd on purpose (7x5 images, 3 channels, stride 2 with padding) so that
off-by-one errors in im2col/col2im cannot hide. ``cnnlab scratch gradcheck`` prints the table.

When the true gradient of a tensor is (about) zero, the relative error is meaningless (about 1 for
any tiny rounding difference) and the absolute error decides; the line then says so. The case
that shows it is a conv bias followed by BatchNorm: the batch mean subtracts any per-channel
constant, so the loss does not depend on that bias at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cnnlab.numpy_engine import layers as L
from cnnlab.numpy_engine.losses import CrossEntropyLoss
from cnnlab.numpy_engine.model import Module, Sequential

ATOL, RTOL, EPS = 1e-5, 1e-3, 1e-6


@dataclass
class CheckResult:
    """Outcome for one tensor (``input`` or a parameter name) of one case."""

    case: str
    tensor: str
    size: int
    max_abs_err: float
    max_rel_err: float
    passed: bool
    note: str = ""

    def line(self) -> str:
        mark = "ok  " if self.passed else "FAIL"
        note = f"  ({self.note})" if self.note else ""
        return (
            f"{mark} {self.case:<44s} {self.tensor:<8s} n={self.size:<5d} "
            f"max|a-n|={self.max_abs_err:.2e}  max rel={self.max_rel_err:.2e}{note}"
        )


def numeric_grad(f: Callable[[], float], x: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to every element of ``x`` (changed in place
    and restored). A loop over elements is fine here: this is a check on tiny arrays, not the engine."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)  # views: x must be contiguous
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def compare(case: str, tensor: str, analytic: np.ndarray, numeric: np.ndarray) -> CheckResult:
    """Apply the pass rule elementwise and summarise the worst errors."""
    err = np.abs(analytic - numeric)
    rel = err / np.maximum(np.abs(numeric), 1e-12)
    ok = bool(np.all(err <= ATOL + RTOL * np.abs(numeric)))
    note = ""
    if float(np.abs(numeric).max()) <= ATOL:
        note = "true gradient ~0, so rel is meaningless; |a-n| decides"
    return CheckResult(case, tensor, int(numeric.size), float(err.max()), float(rel.max()), ok, note)


def check_module(case: str, module: Module, x_shape: tuple[int, ...], seed: int = 0) -> list[CheckResult]:
    """Check dL/dx and dL/dparam of ``module`` (converted to float64) on a random input of ``x_shape``."""
    rng = np.random.default_rng(seed)
    module.astype(np.float64)
    x = rng.standard_normal(x_shape)

    def forward() -> np.ndarray:
        if isinstance(module, L.Dropout):  # the same mask for every evaluation
            module.rng = np.random.default_rng(seed + 1)
        return module.forward(x)

    g = rng.standard_normal(forward().shape)  # dL/dy for L = sum(y * g)

    def loss() -> float:
        return float((forward() * g).sum())

    module.zero_grad()
    forward()
    dx = module.backward(g)
    analytic = {"input": dx} | {name: p.grad.copy() for name, p in module.named_parameters()}
    results = [compare(case, "input", analytic["input"], numeric_grad(loss, x))]
    for name, p in module.named_parameters():
        results.append(compare(case, name, analytic[name], numeric_grad(loss, p.data)))
        if results[-1].note and _bias_before_batchnorm(module, name):
            results[-1].note = "conv bias before BatchNorm: the batch mean cancels it, true gradient 0"
    return results


def _bias_before_batchnorm(module: Module, name: str) -> bool:
    """``name`` is ``<i>.bias`` of a layer directly followed by a BatchNorm in a Sequential."""
    parts = name.split(".")
    if not isinstance(module, Sequential) or len(parts) != 2 or parts[1] != "bias" or not parts[0].isdigit():
        return False
    i = int(parts[0])
    layers = list(module.layers)
    return i + 1 < len(layers) and isinstance(layers[i + 1], L._BatchNorm)


def check_loss(case: str, loss_fn: CrossEntropyLoss, batch: int, classes: int, seed: int = 0) -> list[CheckResult]:
    """Check dL/dlogits of a loss on random logits (scaled up so some rows are confident) and labels."""
    rng = np.random.default_rng(seed)
    z = 3 * rng.standard_normal((batch, classes))
    y = rng.integers(0, classes, batch)
    loss_fn.forward(z, y)
    analytic = loss_fn.backward()
    return [compare(case, "logits", analytic, numeric_grad(lambda: loss_fn.forward(z, y), z))]


def _small_net() -> Sequential:
    return Sequential(
        L.Conv2d(2, 3, 3, padding=1), L.BatchNorm2d(3), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(), L.Linear(3 * 3 * 2, 4), L.Tanh(), L.Linear(4, 3),
    )  # fmt: skip


def _eval(m: Module) -> Module:
    return m.eval()


def _bn_eval(layer: L._BatchNorm) -> Module:
    """Eval mode with non-trivial running statistics and affine parameters."""
    rng = np.random.default_rng(7)
    n = layer.num_features
    layer.buffers["running_mean"] = rng.standard_normal(n)
    layer.buffers["running_var"] = rng.uniform(0.5, 2.0, n)
    layer.params["weight"].data = rng.uniform(0.5, 1.5, n)
    layer.params["bias"].data = rng.standard_normal(n)
    return layer.eval()


# (case name, factory, input shape): every layer, with stride/padding/shape variants
MODULE_CASES: list[tuple[str, Callable[[], Module], tuple[int, ...]]] = [
    ("Conv2d(3,4,k3)", lambda: L.Conv2d(3, 4, 3), (2, 3, 7, 6)),
    ("Conv2d(3,4,k3,s2,p1)", lambda: L.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 7, 8)),
    ("Conv2d(2,3,k(3,2),s(2,1),p(0,1))", lambda: L.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(0, 1)), (2, 2, 7, 5)),
    ("Conv2d(2,3,k5,p2)", lambda: L.Conv2d(2, 3, 5, padding=2), (2, 2, 7, 5)),
    ("Conv2d(3,2,k1,nobias)", lambda: L.Conv2d(3, 2, 1, bias=False), (2, 3, 5, 3)),
    ("Conv2d(1,2,k2,s3)", lambda: L.Conv2d(1, 2, 2, stride=3), (2, 1, 8, 7)),
    ("MaxPool2d(2)", lambda: L.MaxPool2d(2), (2, 3, 6, 8)),
    ("MaxPool2d(2) odd input", lambda: L.MaxPool2d(2), (2, 2, 7, 5)),
    ("MaxPool2d(3,s2,p1)", lambda: L.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 7)),
    ("MaxPool2d((2,3),s1)", lambda: L.MaxPool2d((2, 3), stride=1), (2, 2, 5, 6)),
    ("AvgPool2d(2)", lambda: L.AvgPool2d(2), (2, 3, 6, 5)),
    ("AvgPool2d(3,s2,p1)", lambda: L.AvgPool2d(3, stride=2, padding=1), (2, 3, 7, 6)),
    ("GlobalAvgPool2d", lambda: L.GlobalAvgPool2d(), (2, 3, 5, 3)),
    ("ReLU", lambda: L.ReLU(), (3, 2, 3, 5)),
    ("LeakyReLU(0.1)", lambda: L.LeakyReLU(0.1), (3, 7)),
    ("Sigmoid", lambda: L.Sigmoid(), (3, 7)),
    ("Tanh", lambda: L.Tanh(), (3, 7)),
    ("Linear(5,4)", lambda: L.Linear(5, 4), (3, 5)),
    ("Flatten", lambda: L.Flatten(), (2, 3, 2, 3)),
    ("BatchNorm1d(4) train", lambda: L.BatchNorm1d(4), (5, 4)),
    ("BatchNorm1d(4) eval", lambda: _bn_eval(L.BatchNorm1d(4)), (5, 4)),
    ("BatchNorm2d(3) train", lambda: L.BatchNorm2d(3), (3, 3, 4, 3)),
    ("BatchNorm2d(3) eval", lambda: _bn_eval(L.BatchNorm2d(3)), (3, 3, 4, 3)),
    ("Dropout(0.3) train", lambda: L.Dropout(0.3), (4, 6)),
    ("Dropout(0.3) eval", lambda: _eval(L.Dropout(0.3)), (4, 6)),
    ("Sequential(conv,bn,relu,pool,fc)", _small_net, (2, 2, 6, 5)),
]

LOSS_CASES: list[tuple[str, Callable[[], CrossEntropyLoss], int, int]] = [
    ("CrossEntropyLoss", lambda: CrossEntropyLoss(), 5, 7),
    ("CrossEntropyLoss(sum)", lambda: CrossEntropyLoss(reduction="sum"), 4, 3),
    ("CrossEntropyLoss(label_smoothing=0.1)", lambda: CrossEntropyLoss(label_smoothing=0.1), 5, 4),
]


def run_all(pattern: str = "") -> list[CheckResult]:
    """Run every case whose name contains ``pattern`` (case-insensitive); returns all results."""
    results: list[CheckResult] = []
    for name, factory, shape in MODULE_CASES:
        if pattern.lower() in name.lower():
            results += check_module(name, factory(), shape)
    for name, factory, batch, classes in LOSS_CASES:
        if pattern.lower() in name.lower():
            results += check_loss(name, factory(), batch, classes)
    return results
