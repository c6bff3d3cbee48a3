"""Weight initialisation: how the spread of activations and gradients changes layer by layer.

A deep stack of fully connected layers (10 layers of 256 units, as in Glorot & Bengio 2010 and
He et al. 2015) is fed a batch of standard-normal inputs; for each initialisation the figure
tracks the standard deviation of every layer's activations (forward) and of the gradient reaching
every layer (backward, for a random upstream gradient). Each layer multiplies the variance by
about ``fan_in * Var(w) * gain`` (gain 1 for tanh near 0, 1/2 for ReLU, which zeroes half its
inputs), so:

* too small a spread (``normal 0.01``) shrinks the signal geometrically: vanishing activations
  and gradients; too large (``normal 1``) blows the ReLU signal up, and pins tanh units at +-1
  (saturated: they carry no information), while the few unsaturated ones still multiply the
  gradient by ``fan_in * Var(w) * E[f'^2] > 1`` per layer, so it explodes backwards;
* Xavier/Glorot, std ``sqrt(2 / (fan_in + fan_out))``, keeps tanh's variance about constant;
* He/Kaiming, std ``sqrt(2 / fan_in)``, compensates ReLU's 1/2 and keeps ReLU's variance constant;
* LeCun, std ``sqrt(1 / fan_in)``, is Xavier's forward-only version (SELU's choice);
* zero makes every unit of a layer identical for ever (symmetry): all activations and gradients
  are 0 (tanh/ReLU of 0).

The std formulas are those of ``torch.nn.init`` (a test compares them); plain NumPy keeps the
forward and backward passes readable.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.teach.base import TeachingResult, new_figure, save_result

DEPTH, WIDTH, BATCH = 10, 256, 128
# scheme -> std of the weights as a function of (fan_in, fan_out)
SCHEMES = {
    "zero": lambda fi, fo: 0.0,
    "normal 0.01": lambda fi, fo: 0.01,
    "normal 1": lambda fi, fo: 1.0,
    "xavier_normal": lambda fi, fo: math.sqrt(2.0 / (fi + fo)),
    "he_normal": lambda fi, fo: math.sqrt(2.0 / fi),
    "lecun_normal": lambda fi, fo: math.sqrt(1.0 / fi),
}
ACTS = {  # name -> (f, f')
    "tanh": (np.tanh, lambda h: 1 - np.tanh(h) ** 2),
    "relu": (lambda h: np.maximum(h, 0), lambda h: (h > 0).astype(float)),
}


def layer_statistics(scheme: str, act: str, seed: int = 0) -> dict[str, list[float]]:
    """Std of each layer's activations a_l = f(W_l a_(l-1)) and of dL/da_l, for L = sum(a_last * g)."""
    rng = np.random.default_rng(seed)
    f, df = ACTS[act]
    a = rng.standard_normal((BATCH, WIDTH))  # (B, n)
    weights, pre, acts = [], [], []
    for _ in range(DEPTH):
        W = rng.standard_normal((WIDTH, WIDTH)) * SCHEMES[scheme](WIDTH, WIDTH)  # (n_in, n_out)
        h = a @ W  # (B, n): pre-activation (biases start at 0)
        a = f(h)
        weights.append(W)
        pre.append(h)
        acts.append(a)
    grad = rng.standard_normal((BATCH, WIDTH))  # dL/da_last
    grads = [0.0] * DEPTH
    for layer in reversed(range(DEPTH)):
        grads[layer] = float(grad.std())
        grad = (grad * df(pre[layer])) @ weights[layer].T  # through f, then through W
    return {"activation_std": [float(x.std()) for x in acts], "gradient_std": grads}


def init_example(schemes: list[str] | None = None, out_dir: str | Path | None = None, seed: int = 0) -> TeachingResult:
    """Activation and gradient std per layer for each scheme, with tanh and with ReLU (four panels)."""
    schemes = schemes or list(SCHEMES)
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown:
        raise CnnlabError(f"unknown initialisation {unknown[0]!r}; choose from {', '.join(SCHEMES)}")
    stats = {act: {s: layer_statistics(s, act, seed) for s in schemes} for act in ACTS}
    fig = new_figure(11, 7)
    layers = np.arange(1, DEPTH + 1)
    for r, act in enumerate(ACTS):
        for c, (key, what) in enumerate([("activation_std", "activations"), ("gradient_std", "gradients")]):
            ax = fig.add_subplot(2, 2, 2 * r + c + 1)
            for i, s in enumerate(schemes):
                ys = np.maximum(stats[act][s][key], 1e-12)  # zero init: drawn at the floor
                same = [t for t in schemes[:i] if np.allclose(stats[act][t][key], stats[act][s][key])]
                # a scheme equal to an earlier one (LeCun = Xavier when fan_in = fan_out) is drawn dashed with
                # open markers over it, so both stay visible
                style = (
                    {"ls": "--", "marker": "s", "mfc": "none", "ms": 7, "lw": 2} if same else {"marker": "o", "ms": 3}
                )
                ax.plot(layers, ys, label=s + (f" (= {same[0]} here)" if same else ""), **style)
            ax.set_yscale("log")
            ax.set_ylim(1e-13, 1e8)
            ax.set_xlabel("layer")
            ax.set_ylabel("std")
            ax.set_title(f"{act}: std of the {what} per layer", fontsize=9)
            ax.legend(fontsize=6, ncol=2)
    fig.suptitle(f"{DEPTH} layers of {WIDTH} units, batch {BATCH} of N(0, 1) inputs (zero init drawn at 1e-12)")
    fig.tight_layout()
    values: dict[str, Any] = {"depth": DEPTH, "width": WIDTH, "batch": BATCH, "seed": seed, "stats": stats,
                              "weight_std": {s: SCHEMES[s](WIDTH, WIDTH) for s in schemes}}  # fmt: skip
    name = "init" if schemes == list(SCHEMES) else "init_" + "_".join(s.replace(" ", "") for s in schemes)
    return save_result(fig, TeachingResult(name, values), out_dir)


def init_text(result: TeachingResult) -> str:
    """A table: weight std, then activation and gradient std at layers 1, 5 and 10, per activation."""
    v = result.values
    lines = [f"{v['depth']} layers of {v['width']} units; std of activations (a) and of gradients (g) at layer:"]
    for act, per_scheme in v["stats"].items():
        lines.append(f"{act:<15}{'w std':>9}{'a1':>10}{'a5':>10}{'a10':>10}{'g1':>10}{'g5':>10}{'g10':>10}")
        for s, st in per_scheme.items():
            a, g = st["activation_std"], st["gradient_std"]
            nums = [a[0], a[4], a[-1], g[0], g[4], g[-1]]
            lines.append(f"  {s:<13}{v['weight_std'][s]:>9.3g}" + "".join(f"{x:>10.3g}" for x in nums))
    lines.append("(every layer has fan_in = fan_out, so Xavier and LeCun coincide here; g10 is the upstream gradient)")
    return "\n".join(lines)
