"""Worked numeric examples: softmax and cross-entropy, 1x1-convolution savings, parameter counts,
batch norm and dropout.

The inputs are the project's source notes' examples (logits [2.5, 1.0, 0.1] and an 85/10/5 %
dog/cat/bird prediction; two 1x1 bottlenecks and a depthwise-separable layer; single-layer
parameter counts and the ``seed_cnn`` model's total); every output is computed here from the
formulas in :mod:`cnnlab.arithmetic`. Where a source prints a wrong value (the softmax
probabilities, one bottleneck's savings, the model total, the batch-norm and dropout formulas) the
text output says so with :func:`cnnlab.teach.base.correction`; ``docs/seed-errata.md`` lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.arithmetic import conv_macs, conv_params, linear_params, pool_output_size
from cnnlab.teach.base import TeachingResult, corrections_text, new_figure, save_result

DEFAULT_LOGITS = [2.5, 1.0, 0.1]
CE_PROBS = {"dog": 0.85, "cat": 0.10, "bird": 0.05}  # true class: cat
SOFTMAX_ERRATA = [("[0.76, 0.21, 0.03] for the logits [2.5, 1, 0.1]", "[0.76, 0.17, 0.07]",
                   "e^2.5 = 12.1825, e^1 = 2.7183 and e^0.1 = 1.1052 add up to 16.0059, and each divided by "
                   "that sum gives 0.7611, 0.1698 and 0.0690")]  # fmt: skip


# --- softmax + cross-entropy -------------------------------------------------------------------
def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the max so exp never overflows (the result is unchanged)."""
    z = np.asarray(z, dtype=float)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy(z: np.ndarray, target: int) -> float:
    """``-log softmax(z)[target] = logsumexp(z) - z[target]`` (the simplified form)."""
    z = np.asarray(z, dtype=float)
    m = z.max()
    return float(m + np.log(np.exp(z - m).sum()) - z[target])


def softmax_example(logits: list[float] | None = None, out_dir: str | Path | None = None) -> TeachingResult:
    """Logits -> exponentials -> probabilities -> cross-entropy for each possible true class, and the
    gradient ``p - onehot`` that backprop starts from; plus the -log(0.10) example. Custom logits
    are written as ``softmax_<logits>`` so they never overwrite the default example's figure."""
    custom = logits is not None and list(logits) != DEFAULT_LOGITS
    z = np.asarray(DEFAULT_LOGITS if logits is None else logits, dtype=float)
    exps = np.exp(z)
    p = softmax(z)
    losses = [cross_entropy(z, t) for t in range(len(z))]
    probs = CE_PROBS
    values: dict[str, Any] = {
        "logits": z,
        "exp": exps,
        "sum_exp": float(exps.sum()),
        "probabilities": p,
        "cross_entropy_per_target": losses,
        "gradient_if_target_0": p - np.eye(len(z))[0],
        "example_loss_cat": float(-np.log(probs["cat"])),
        "example_probs": probs,
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
    name = "softmax_" + "_".join(f"{x:g}" for x in z) if custom else "softmax"
    extra = {"errata": [] if custom else SOFTMAX_ERRATA}
    return save_result(fig, TeachingResult(name, values, extra=extra), out_dir)


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
    probs = v["example_probs"]
    lines.append(
        f"a prediction p(dog, cat, bird) = ({probs['dog']}, {probs['cat']}, {probs['bird']}) for a cat costs "
        f"-log({probs['cat']}) = {v['example_loss_cat']:.4f}"
    )
    return "\n".join(lines + corrections_text(result.extra.get("errata", [])))


# --- 1x1 convolutions ----------------------------------------------------------------------------
# (name, H=W, C_in, bottleneck channels, C_out, k): "direct" is one k x k conv C_in -> C_out;
# "bottleneck" is a 1x1 conv C_in -> mid followed by the k x k conv mid -> C_out ("same" padding)
ONE_BY_ONE_EXAMPLES = [
    ("bottleneck (32x32x256, 1x1x64 then 5x5x128)", 32, 256, 64, 128, 5),
    ("GoogLeNet branch (28x28x192, 1x1x96 then 5x5x128)", 28, 192, 96, 128, 5),
]
ONE_BY_ONE_ERRATA = [("820,000 weights for the direct 5x5x256x128 conv", "819,200", "5*5*256*128 = 819,200"),
                     ("102,400 for the 5x5 conv after the 1x1 and 118,784 in total", "204,800 and 221,184",
                      "the 5x5 conv has 5*5*64*128 = 204,800 weights and the 1x1 adds 256*64 = 16,384; the saving is "
                      "3.70x, not the 6.9x the printed numbers imply")]  # fmt: skip


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
    """The depthwise-separable example, per output position: standard k x k x C_in x C_out multiplies versus
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
    return save_result(fig, TeachingResult("onebyone", values, extra={"errata": ONE_BY_ONE_ERRATA}), out_dir)


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
        f"depthwise separable (per position, 3x3, 3 -> 256): standard {d['standard']:,} vs "
        f"{d['depthwise']} + {d['pointwise']} = {d['separable']:,} multiplies ({d['ratio']:.2f}x fewer)"
    )
    return "\n".join(lines + corrections_text(result.extra.get("errata", [])))


# --- parameter counts ------------------------------------------------------------------------------
SEED_CNN_TOTAL = "seed_cnn model total"
PARAMS_ERRATA = [("about 1,276,734 parameters for seed_cnn (about 500 in batch norm)",
                  "1,278,218 (1,984 in batch norm)",
                  "besides the 448 of the three BatchNorm2d layers, the BatchNorm1d after the first two dense "
                  "layers hold 2*(512 + 256) = 1,536")]  # fmt: skip


def params_examples() -> dict[str, dict[str, Any]]:
    """Parameter-count examples, each with its formula and the computed value; the last one is the
    ``seed_cnn`` model (3 conv blocks with batch norm, 3 dense layers) layer by layer."""
    convs = [conv_params(3, 32, 3), conv_params(32, 64, 3), conv_params(64, 128, 3)]
    bn = [2 * c for c in (32, 64, 128, 512, 256)]  # BatchNorm2d after each conv, BatchNorm1d after FC1, FC2
    fc = [linear_params(2048, 512), linear_params(512, 256), linear_params(256, 10)]
    return {
        "conv 3x3, 1 -> 16": {"formula": "(3*3*1 + 1) * 16", "value": conv_params(1, 16, 3)},
        "dense 128 -> 64": {"formula": "(128 + 1) * 64", "value": linear_params(128, 64)},
        "batch norm, 16 channels": {"formula": "2 * 16 (gamma, beta)", "value": 2 * 16},
        "max pool 2x2 s2 on 32x32": {"formula": "floor((32 - 2) / 2) + 1", "value": pool_output_size(32, 2)},
        "conv 3x3, 3 -> 64": {"formula": "3*3*3*64 + 64", "value": conv_params(3, 64, 3)},
        "dense 1024 -> 512": {"formula": "1024*512 + 512", "value": linear_params(1024, 512)},
        SEED_CNN_TOTAL: {
            "formula": "convs " + " + ".join(map(str, convs)) + "; BN " + " + ".join(map(str, bn))
            + "; FC " + " + ".join(map(str, fc)),
            "value": sum(convs) + sum(bn) + sum(fc),
            "layers": dict(zip(["conv1", "conv2", "conv3", "bn1", "bn2", "bn3", "bn_fc1", "bn_fc2", "fc1", "fc2",
                                "fc3"], convs + bn + fc, strict=True)),
        },
    }  # fmt: skip


def params_figure(examples: dict[str, dict[str, Any]], out_dir: str | Path | None = None) -> TeachingResult:
    """One bar per ``seed_cnn`` layer on a log scale: the first dense layer holds most of the weights."""
    layers = examples[SEED_CNN_TOTAL]["layers"]
    fig = new_figure(9, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    bars = ax.bar(list(layers), list(layers.values()), color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:,}" for v in layers.values()], fontsize=7, rotation=90, padding=2)
    ax.set_yscale("log")
    ax.set_ylim(10, 2e7)
    ax.set_ylabel("parameters")
    ax.set_title(f"seed_cnn: {examples[SEED_CNN_TOTAL]['value']:,} parameters, layer by layer", fontsize=9)
    fig.tight_layout()
    values = {name: {k: v for k, v in ex.items()} for name, ex in examples.items()}
    return save_result(fig, TeachingResult("params", values, extra={"errata": PARAMS_ERRATA}), out_dir)


def params_text(result: TeachingResult) -> str:
    examples = result.values
    width = max(map(len, examples))
    lines = [f"{name:<{width}}  {ex['formula']} = {ex['value']:,}" for name, ex in examples.items()]
    return "\n".join(lines + corrections_text(result.extra.get("errata", [])))


# --- batch norm and dropout --------------------------------------------------------------------
BN_INPUT = [[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [6.0, 40.0]]  # (N=4, C=2): two features, four examples
BN_GAMMA, BN_BETA = [1.0, 0.5], [0.0, 1.0]


def batchnorm_example(
    x: list[list[float]] | None = None,
    momentum: float = 0.1,
    eps: float = 1e-5,
    p_drop: float = 0.5,
    seed: int = 0,
    out_dir: str | Path | None = None,
) -> TeachingResult:
    """Normalise each channel with the batch mean and (biased) variance, scale by gamma and shift by
    beta; update the running statistics the way torch does (unbiased variance,
    ``running = (1 - momentum) running + momentum batch``). Then inverted dropout: keep each unit
    with probability 1 - p and scale the kept ones by 1 / (1 - p). The figure shows each channel
    before and after normalisation, train- versus eval-mode outputs, and the dropout mask."""
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
        # non-inverted dropout (Srivastava et al. 2014; seed 001): no scaling in training, x (1 - p) at test time
        "dropout_classic_train": units * keep, "dropout_classic_eval": units * (1 - p_drop),
        "dropout_means": _dropout_means(p_drop, rng),
    }  # fmt: skip
    return save_result(_batchnorm_figure(values), TeachingResult("batchnorm", values, extra={"errata": BN_ERRATA}),
                       out_dir)  # fmt: skip


def _batchnorm_figure(v: dict[str, Any]):
    fig = new_figure(12, 3.4)
    ax = fig.add_subplot(1, 3, 1)
    for c in range(v["x"].shape[1]):
        ax.plot(v["x"][:, c], np.full(len(v["x"]), c + 0.1), "o", label=f"x, channel {c}")
        ax.plot(v["x_hat"][:, c], np.full(len(v["x"]), c - 0.1), "s", label=f"x_hat, channel {c}")
    ax.set_yticks([0, 1], ["channel 0", "channel 1"])
    ax.set_xscale("symlog")  # linear within +-1, logarithmic beyond: x reaches 30 while x_hat stays near 0
    ax.set_xlim(-4, 2 * float(np.abs(v["x"]).max()))
    ax.set_xlabel("value (symmetric log scale: linear in [-1, 1], log outside)", fontsize=8)
    ax.set_title("batch values before (o) and after (s) normalising", fontsize=9)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 3, 2)
    idx = np.arange(v["y_train"].size)
    ax.bar(idx - 0.2, v["y_train"].ravel(), 0.4, label="train mode (batch statistics)")
    ax.bar(idx + 0.2, v["y_eval"].ravel(), 0.4, label="eval mode (running statistics)")
    ax.set_xticks(idx, [f"x[{i},{c}]" for i in range(v["x"].shape[0]) for c in range(v["x"].shape[1])],
                  fontsize=6, rotation=45)  # fmt: skip
    ax.set_title("batch-norm output y = gamma * x_hat + beta", fontsize=9)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 3, 3)
    units = np.arange(v["dropout_out"].size)
    bars = ax.bar(units - 0.2, v["dropout_out"], 0.4, color="tab:green", label="inverted: train x mask / (1-p)")
    ax.bar_label(bars, fmt="%g", fontsize=7)
    ax.bar(units + 0.2, v["dropout_classic_train"], 0.4, color="tab:olive", hatch="//",
           label="original: train x mask")  # fmt: skip
    ax.axhline(1.0, color="tab:green", ls="--", lw=1, label="inverted at test: x")
    ax.axhline(1 - v["dropout_p"], color="tab:olive", ls=":", lw=1.5, label="original at test: x (1-p)")
    ax.set_ylim(0, 2.9)
    ax.set_title(f"dropout p = {v['dropout_p']}, same mask, both forms", fontsize=9)
    ax.set_ylabel("output (input 1)", fontsize=8)
    ax.set_xlabel("unit (input all ones)")
    ax.legend(fontsize=6, ncol=2, loc="upper center")
    fig.tight_layout()
    return fig


BN_ERRATA = [
    ("BN(x) = gamma * (x - mu) / sqrt((var + eps) + beta)", "BN(x) = gamma * (x - mu) / sqrt(var + eps) + beta",
     "beta is a shift added after scaling; inside the root it would change the scale instead, and any beta below "
     "-(var + eps) would make the root undefined"),
    ("test-time mean and variance taken from the last training batch", "running averages over all batches",
     "one batch is a noisy estimate; torch keeps running = (1 - momentum) * running + momentum * batch"),
    ("mask = (random() > keep_prob); output = input * mask / keep_prob",
     "mask = (random() < keep_prob)",
     "random() > keep_prob keeps a unit with probability 1 - keep_prob; with keep_prob = 0.8 it would keep 20 % "
     "of the units and scale them by 1/0.8, so the expected output would be 0.25x the input instead of 1x"),
]  # fmt: skip


def _dropout_means(p: float, rng: np.random.Generator, n: int = 10_000) -> dict[str, tuple[float, float]]:
    """Mean unit output of inverted and non-inverted dropout over ``n`` masks, against their test output."""
    kept = (rng.random(n) >= p).astype(float)
    return {"inverted": (float((kept / (1 - p)).mean()), 1.0), "classic": (float(kept.mean()), 1 - p)}


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
        f"non-inverted dropout (the original paper, Srivastava et al. 2014): train output = input * mask = "
        f"{v['dropout_classic_train'].astype(int).tolist()},",
        f"  test output = input * (1 - p) = {np.round(v['dropout_classic_eval'], 4).tolist()}",
        "  mean output over 10,000 masks, train vs test: inverted {inverted[0]:.4f} vs {inverted[1]:.4f}, "
        "non-inverted {classic[0]:.4f} vs {classic[1]:.4f}: both match their test-time output in expectation".format(
            **v["dropout_means"]
        ),
    ]
    return "\n".join(lines + corrections_text(result.extra.get("errata", [])))
