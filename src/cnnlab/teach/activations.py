"""Activation functions and their derivatives, in NumPy, with a plot of each.

The classic list is ReLU, Leaky ReLU, sigmoid, tanh and Swish (``swish`` here is the same
function as ``silu``: Swish with beta = 1, Ramachandran et al. 2017); GELU (Hendrycks & Gimpel
2016), ELU (Clevert et al. 2016) and softplus are added because
modern CNNs use them. Each function has its derivative written out by hand, the way backprop
needs it; a test checks both against torch (values and autograd). The figure shows one panel per
activation with f (solid) and f' (dashed) so a student can see where gradients vanish (sigmoid,
tanh at large |x|) or die (ReLU for x < 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.registry import Registry
from cnnlab.teach.base import TeachingResult, new_figure, save_result

Array = np.ndarray
_erf = np.vectorize(math.erf, otypes=[float])

ACTIVATIONS: Registry = Registry("activation")
LEAKY_SLOPE = 0.01  # f(x) = max(0.01x, x)
ELU_ALPHA = 1.0


def _sigmoid(x: Array) -> Array:
    # split by sign so exp never overflows: for x < 0 use e^x / (1 + e^x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


@ACTIVATIONS.register("relu")
def relu() -> tuple[Callable[[Array], Array], Callable[[Array], Array], str]:
    # the derivative at exactly 0 is taken as 0, as torch does
    return (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float), "max(0, x)")


@ACTIVATIONS.register("leaky_relu")
def leaky_relu():
    a = LEAKY_SLOPE
    return (lambda x: np.where(x > 0, x, a * x), lambda x: np.where(x > 0, 1.0, a), f"max({a}x, x)")


@ACTIVATIONS.register("sigmoid")
def sigmoid():
    return (_sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x)), "1 / (1 + e^-x)")


@ACTIVATIONS.register("tanh")
def tanh():
    return (np.tanh, lambda x: 1 - np.tanh(x) ** 2, "(e^x - e^-x) / (e^x + e^-x)")


@ACTIVATIONS.register("silu")
def silu():
    # SiLU = Swish with beta 1: x sigma(x); d/dx = sigma(x) (1 + x (1 - sigma(x)))
    return (lambda x: x * _sigmoid(x), lambda x: _sigmoid(x) * (1 + x * (1 - _sigmoid(x))), "x * sigmoid(x)")


@ACTIVATIONS.register("swish")
def swish():
    # Swish (Ramachandran et al. 2017) with beta = 1 is SiLU; torch calls it nn.SiLU
    f, df, _ = silu()
    return (f, df, "x * sigmoid(x) (= silu)")


@ACTIVATIONS.register("gelu")
def gelu():
    # exact GELU: x Phi(x) with the standard normal CDF Phi; d/dx = Phi(x) + x phi(x)
    def cdf(x):
        return 0.5 * (1 + _erf(x / math.sqrt(2)))

    def pdf(x):
        return np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)

    return (lambda x: x * cdf(x), lambda x: cdf(x) + x * pdf(x), "x * Phi(x)")


@ACTIVATIONS.register("elu")
def elu():
    a = ELU_ALPHA
    return (
        lambda x: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))),
        lambda x: np.where(x > 0, 1.0, a * np.exp(np.minimum(x, 0))),
        f"x if x > 0 else {a}(e^x - 1)",
    )


@ACTIVATIONS.register("softplus")
def softplus():
    # log(1 + e^x) computed as max(x, 0) + log1p(e^-|x|) to avoid overflow; its derivative is sigmoid
    return (lambda x: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))), _sigmoid, "log(1 + e^x)")


ACTIVATION_ORDER = ["relu", "leaky_relu", "sigmoid", "tanh", "silu", "gelu", "elu", "softplus"]


def activation(name: str) -> tuple[Callable[[Array], Array], Callable[[Array], Array]]:
    """``(f, f')`` for a registered activation name."""
    f, df, _ = ACTIVATIONS.create(name)
    return f, df


def activation_plots(
    names: list[str] | None = None, out_dir: str | Path | None = None, x_range: float = 4.0
) -> TeachingResult:
    """One panel per activation with f and f'; the JSON holds values at x = -3..3 and derivative facts."""
    names = names or ACTIVATION_ORDER
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig = new_figure(3.2 * cols, 2.8 * rows)
    x = np.linspace(-x_range, x_range, 401)
    probe = np.arange(-3.0, 3.5, 1.0)
    values: dict[str, Any] = {"x": probe, "activations": {}}
    for i, name in enumerate(names):
        f, df, formula = ACTIVATIONS.create(name)
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot(x, f(x), label="f(x)")
        ax.plot(x, df(x), "--", label="f'(x)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_title(f"{name}: {formula}", fontsize=8)
        if i == 0:
            ax.legend(fontsize=7)
        values["activations"][name] = {
            "formula": formula,
            "f": f(probe),
            "df": df(probe),
            "max_derivative": float(df(x).max()),
            "derivative_at_minus_4": float(df(np.array(-4.0))),
        }
    fig.tight_layout()
    name = "activations" if len(names) > 1 else f"activation_{names[0]}"
    return save_result(fig, TeachingResult(name, values), out_dir)


def activation_text(result: TeachingResult) -> str:
    """A table of f(x) and f'(x) at x = -3..3 for each activation."""
    xs = result.values["x"]
    head = "x".ljust(12) + "".join(f"{x:>8g}" for x in xs)
    lines = [head]
    for name, info in result.values["activations"].items():
        lines.append(f"{name:<12}" + "".join(f"{v:8.3f}" for v in info["f"]))
        lines.append(f"{name + chr(39):<12}" + "".join(f"{v:8.3f}" for v in info["df"]))
    return "\n".join(lines)
