"""Worked numeric examples: softmax and cross-entropy, 1x1-convolution savings, parameter counts.

The inputs are the seeds' own (seed 002's logits [2.5, 1.0, 0.1] and its 85/10/5 % cat example;
seed 004's and seed 002's 1x1 bottlenecks and depthwise-separable example; seed 004's and seed
002's parameter-count examples); every output is computed here from the formulas in
:mod:`cnnlab.arithmetic`. Seed 002's softmax probabilities and seed 004's 1x1 savings are printed
wrongly in the seeds; ``docs/seed-errata.md`` compares them with what these functions return.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.arithmetic import conv_macs, conv_params, linear_params, pool_output_size
from cnnlab.viz.teaching import TeachingResult, new_figure, save_result

SEED002_LOGITS = [2.5, 1.0, 0.1]
SEED002_CE_PROBS = {"dog": 0.85, "cat": 0.10, "bird": 0.05}  # true class: cat


# --- softmax + cross-entropy -------------------------------------------------------------------
def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the max so exp never overflows (the result is unchanged)."""
    z = np.asarray(z, dtype=float)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy(z: np.ndarray, target: int) -> float:
    """``-log softmax(z)[target] = logsumexp(z) - z[target]`` (seed 000's simplified form)."""
    z = np.asarray(z, dtype=float)
    m = z.max()
    return float(m + np.log(np.exp(z - m).sum()) - z[target])


def softmax_example(logits: list[float] | None = None, out_dir: str | Path | None = None) -> TeachingResult:
    """Logits -> exponentials -> probabilities -> cross-entropy for each possible true class, and the
    gradient ``p - onehot`` that backprop starts from; plus seed 002's -log(0.10) example."""
    z = np.asarray(logits or SEED002_LOGITS, dtype=float)
    exps = np.exp(z)
    p = softmax(z)
    losses = [cross_entropy(z, t) for t in range(len(z))]
    probs = SEED002_CE_PROBS
    values: dict[str, Any] = {
        "logits": z,
        "exp": exps,
        "sum_exp": float(exps.sum()),
        "probabilities": p,
        "cross_entropy_per_target": losses,
        "gradient_if_target_0": p - np.eye(len(z))[0],
        "seed002_loss_cat": float(-np.log(probs["cat"])),
        "seed002_probs": probs,
    }
    fig = new_figure(12, 3.4)
    panels = [
        ("logits z", z),
        ("e^z", exps),
        ("softmax p = e^z / Σe^z", p),
        ("cross-entropy if true class = k", losses),
    ]
    labels = [f"k={k}" for k in range(len(z))]
    for i, (title, data) in enumerate(panels):
        ax = fig.add_subplot(1, 4, i + 1)
        bars = ax.bar(labels, data, color=["tab:blue", "tab:orange", "tab:green", "tab:red"][i])
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_result(fig, TeachingResult("softmax", values), out_dir)


def softmax_text(result: TeachingResult) -> str:
    v = result.values
    z, e, p = v["logits"], v["exp"], v["probabilities"]
    lines = ["logits z = [" + ", ".join(f"{x:g}" for x in z) + "]"]
    lines += [f"e^{x:g} = {ex:.4f}" for x, ex in zip(z, e, strict=True)]
    lines.append(f"sum = {v['sum_exp']:.4f}")
    lines += [f"p[{k}] = {ex:.4f} / {v['sum_exp']:.4f} = {pk:.4f}" for k, (ex, pk) in enumerate(zip(e, p, strict=True))]
    lines += [f"cross-entropy if the true class is {k}: -log p[{k}] = {loss:.4f}"
              for k, loss in enumerate(v["cross_entropy_per_target"])]  # fmt: skip
    grad = ", ".join(f"{g:+.4f}" for g in v["gradient_if_target_0"])
    lines.append(f"dL/dz for true class 0 = p - onehot = [{grad}]")
    probs = v["seed002_probs"]
    lines.append(
        f"seed 002: p(dog, cat, bird) = ({probs['dog']}, {probs['cat']}, {probs['bird']}), true class cat: "
        f"-log({probs['cat']}) = {v['seed002_loss_cat']:.4f}"
    )
    return "\n".join(lines)


# --- 1x1 convolutions ----------------------------------------------------------------------------
# (name, H=W, C_in, bottleneck channels, C_out, k): "direct" is one k x k conv C_in -> C_out;
# "bottleneck" is a 1x1 conv C_in -> mid followed by the k x k conv mid -> C_out ("same" padding)
ONE_BY_ONE_EXAMPLES = [
    ("seed004 (32x32x256, 1x1x64 then 5x5x128)", 32, 256, 64, 128, 5),
    ("seed002 GoogLeNet (28x28x192, 1x1x96 then 5x5x128)", 28, 192, 96, 128, 5),
]


def bottleneck_costs(size: int, c_in: int, mid: int, c_out: int, k: int, bias: bool = False) -> dict[str, Any]:
    """Weights and multiply-accumulates of a direct k x k conv versus 1x1 reduction + k x k conv."""
    direct_p = conv_params(c_in, c_out, k, bias=bias)
    reduce_p = conv_params(c_in, mid, 1, bias=bias)
    conv_p = conv_params(mid, c_out, k, bias=bias)
    direct_m = conv_macs(c_in, c_out, k, size)
    bott_m = conv_macs(c_in, mid, 1, size) + conv_macs(mid, c_out, k, size)
    bott_p = reduce_p + conv_p
    return {
        "direct_params": direct_p,
        "one_by_one_params": reduce_p,
        "kxk_after_params": conv_p,
        "bottleneck_params": bott_p,
        "param_ratio": direct_p / bott_p,
        "param_reduction_pct": 100 * (1 - bott_p / direct_p),
        "direct_macs": direct_m,
        "bottleneck_macs": bott_m,
        "mac_ratio": direct_m / bott_m,
    }


def depthwise_separable_costs(c_in: int = 3, c_out: int = 256, k: int = 3) -> dict[str, Any]:
    """Seed 002's example, per output position: standard k x k x C_in x C_out multiplies versus
    depthwise (k x k x C_in) plus pointwise (C_in x C_out)."""
    standard = k * k * c_in * c_out
    separable = k * k * c_in + c_in * c_out
    return {"standard": standard, "depthwise": k * k * c_in, "pointwise": c_in * c_out,
            "separable": separable, "ratio": standard / separable}  # fmt: skip


def onebyone_example(out_dir: str | Path | None = None) -> TeachingResult:
    """The 1x1 bottleneck examples (weights and MACs, with and without bias) and the depthwise one."""
    values: dict[str, Any] = {"examples": {}, "depthwise_separable": depthwise_separable_costs()}
    for name, size, c_in, mid, c_out, k in ONE_BY_ONE_EXAMPLES:
        values["examples"][name] = {
            "input": [size, size, c_in], "mid": mid, "c_out": c_out, "kernel": k,
            "no_bias": bottleneck_costs(size, c_in, mid, c_out, k, bias=False),
            "with_bias": bottleneck_costs(size, c_in, mid, c_out, k, bias=True),
        }  # fmt: skip
    fig = new_figure(11, 4)
    names = list(values["examples"])
    x = np.arange(len(names))
    for i, (key, title) in enumerate([("params", "weights (no bias)"), ("macs", "multiply-accumulates")]):
        ax = fig.add_subplot(1, 2, i + 1)
        direct = [values["examples"][n]["no_bias"][f"direct_{key}"] for n in names]
        bott = [values["examples"][n]["no_bias"][f"bottleneck_{key}"] for n in names]
        b1 = ax.bar(x - 0.2, direct, 0.4, label="direct k x k")
        b2 = ax.bar(x + 0.2, bott, 0.4, label="1x1 then k x k")
        ax.bar_label(b1, labels=[f"{v:,}" for v in direct], fontsize=7)
        ax.bar_label(b2, labels=[f"{v:,}" for v in bott], fontsize=7)
        ax.set_xticks(x, [n.split(" (")[0] for n in names])
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_result(fig, TeachingResult("onebyone", values), out_dir)


def onebyone_text(result: TeachingResult) -> str:
    lines = []
    for name, ex in result.values["examples"].items():
        h, _, c_in = ex["input"]
        k, mid, c_out = ex["kernel"], ex["mid"], ex["c_out"]
        nb, wb = ex["no_bias"], ex["with_bias"]
        lines += [
            name,
            f"  direct {k}x{k}x{c_in}x{c_out}            = {nb['direct_params']:,} weights"
            f" ({wb['direct_params']:,} with bias), {nb['direct_macs']:,} MACs",
            f"  1x1: {c_in}x{mid} = {nb['one_by_one_params']:,}; "
            f"then {k}x{k}x{mid}x{c_out} = {nb['kxk_after_params']:,}",
            f"  bottleneck total               = {nb['bottleneck_params']:,} weights"
            f" ({wb['bottleneck_params']:,} with bias), {nb['bottleneck_macs']:,} MACs",
            f"  saving: {nb['param_ratio']:.2f}x fewer weights ({nb['param_reduction_pct']:.1f}% less), "
            f"{nb['mac_ratio']:.2f}x fewer MACs (at {h}x{h}, 'same' padding)",
        ]
    d = result.values["depthwise_separable"]
    lines.append(
        f"seed002 depthwise separable (per position, 3x3, 3 -> 256): standard {d['standard']:,} vs "
        f"{d['depthwise']} + {d['pointwise']} = {d['separable']:,} multiplies ({d['ratio']:.2f}x fewer)"
    )
    return "\n".join(lines)


# --- parameter counts ------------------------------------------------------------------------------
def params_examples() -> dict[str, dict[str, Any]]:
    """The seeds' parameter-count examples, each with its formula and the computed value."""
    seed_cnn = [conv_params(3, 32, 3), conv_params(32, 64, 3), conv_params(64, 128, 3)]
    bn = [2 * c for c in (32, 64, 128, 512, 256)]  # BatchNorm2d after each conv, BatchNorm1d after FC1, FC2
    fc = [linear_params(2048, 512), linear_params(512, 256), linear_params(256, 10)]
    return {
        "seed004 conv 3x3, 1 -> 16": {"formula": "(3*3*1 + 1) * 16", "value": conv_params(1, 16, 3)},
        "seed004 dense 128 -> 64": {"formula": "(128 + 1) * 64", "value": linear_params(128, 64)},
        "seed004 batch norm, 16 channels": {"formula": "2 * 16 (gamma, beta)", "value": 2 * 16},
        "seed004 max pool 2x2 s2 on 32x32": {"formula": "floor((32 - 2) / 2) + 1", "value": pool_output_size(32, 2)},
        "seed002 conv 3x3, 3 -> 64": {"formula": "3*3*3*64 + 64", "value": conv_params(3, 64, 3)},
        "seed002 dense 1024 -> 512": {"formula": "1024*512 + 512", "value": linear_params(1024, 512)},
        "seed000 seed CNN total": {
            "formula": "convs "
            + " + ".join(map(str, seed_cnn))
            + "; BN "
            + " + ".join(map(str, bn))
            + "; FC "
            + " + ".join(map(str, fc)),
            "value": sum(seed_cnn) + sum(bn) + sum(fc),
        },  # fmt: skip
    }


def params_text(examples: dict[str, dict[str, Any]]) -> str:
    width = max(map(len, examples))
    return "\n".join(f"{name:<{width}}  {ex['formula']} = {ex['value']:,}" for name, ex in examples.items())


# --- batch norm and dropout --------------------------------------------------------------------
BN_INPUT = [[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [6.0, 40.0]]  # (N=4, C=2): two features, four examples
BN_GAMMA, BN_BETA = [1.0, 0.5], [0.0, 1.0]


def batchnorm_example(
    x: list[list[float]] | None = None, momentum: float = 0.1, eps: float = 1e-5, p_drop: float = 0.5, seed: int = 0
) -> TeachingResult:
    """Seed 004 section 2.2: normalise each channel with the batch mean and (biased) variance, scale by
    gamma and shift by beta; update the running statistics the way torch does (unbiased variance,
    ``running = (1 - momentum) running + momentum batch``). Then inverted dropout (seed 004 2.3):
    keep each unit with probability 1 - p and scale the kept ones by 1 / (1 - p)."""
    x = np.asarray(x or BN_INPUT, dtype=float)  # (N, C)
    gamma, beta = np.asarray(BN_GAMMA), np.asarray(BN_BETA)
    mean, var = x.mean(0), x.var(0)  # biased variance normalises the batch
    x_hat = (x - mean) / np.sqrt(var + eps)
    y = gamma * x_hat + beta
    n = x.shape[0]
    running_mean = (1 - momentum) * 0.0 + momentum * mean  # buffers start at mean 0, variance 1
    running_var = (1 - momentum) * 1.0 + momentum * var * n / (n - 1)  # torch stores the unbiased variance
    y_eval = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
    rng = np.random.default_rng(seed)
    units = np.ones(10)
    keep = rng.random(units.shape) >= p_drop
    values = {
        "x": x, "gamma": gamma, "beta": beta, "eps": eps, "momentum": momentum,
        "batch_mean": mean, "batch_var": var, "x_hat": x_hat, "y_train": y,
        "running_mean": running_mean, "running_var": running_var, "y_eval": y_eval,
        "dropout_p": p_drop, "dropout_in": units, "dropout_mask": keep.astype(int),
        "dropout_out": units * keep / (1 - p_drop),
    }  # fmt: skip
    return TeachingResult("batchnorm", values)


def batchnorm_text(result: TeachingResult) -> str:
    v = result.values
    m = v["momentum"]

    def row(a) -> str:
        return "[" + ", ".join(f"{t:.4f}" for t in np.ravel(a)) + "]"

    lines = ["batch x (4 examples x 2 channels):"] + [f"  {row(r)}" for r in v["x"]]
    lines += [
        f"batch mean  = {row(v['batch_mean'])}",
        f"batch var   = {row(v['batch_var'])}  (biased: divide by N)",
        "x_hat = (x - mean) / sqrt(var + eps):",
        *[f"  {row(r)}" for r in v["x_hat"]],
        f"y = gamma * x_hat + beta with gamma {row(v['gamma'])}, beta {row(v['beta'])}:",
        *[f"  {row(r)}" for r in v["y_train"]],
        f"running mean = {1 - m:g}*0 + {m:g}*mean         = {row(v['running_mean'])}",
        f"running var  = {1 - m:g}*1 + {m:g}*var*N/(N-1)  = {row(v['running_var'])}",
        "eval mode uses the running statistics, not the batch's:",
        *[f"  {row(r)}" for r in v["y_eval"]],
        f"dropout p = {v['dropout_p']}: mask {v['dropout_mask'].tolist()}",
        f"  output = input * mask / (1 - p) = {np.round(v['dropout_out'], 4).tolist()}",
        "  (in eval mode dropout is the identity)",
    ]
    return "\n".join(lines)
