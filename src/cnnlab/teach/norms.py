"""Batch, layer, instance and group normalisation: the same formula over different axes.

Every one of them computes ``(x - mean) / sqrt(var + eps)`` (then a learned per-channel scale and
shift); they differ only in which values share one mean and variance (Wu & He 2018, figure 2):

* batch norm (Ioffe & Szegedy 2015): per channel, over the batch and the positions (N, H, W);
* layer norm (Ba et al. 2016): per example, over all channels and positions (C, H, W);
* instance norm (Ulyanov et al. 2016): per example and channel, over the positions (H, W);
* group norm (Wu & He 2018): per example and group of channels, over (C/G, H, W).

Only batch norm mixes examples, so only it behaves differently with a batch of 2 than with a
batch of 256, and only it needs running statistics for evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.teach.base import TeachingResult, new_figure, save_result

N, C, H, W, GROUPS = 2, 4, 2, 2, 2
EPS = 1e-5


def normalise(x: np.ndarray, kind: str, groups: int = GROUPS) -> tuple[np.ndarray, np.ndarray]:
    """``(normalised x, mean of each set)`` for x (N, C, H, W) without the affine scale and shift."""
    n, c = x.shape[:2]
    if kind == "group":  # (N, G, C/G, H, W): one set per example and group
        xg = x.reshape(n, groups, c // groups, *x.shape[2:])
        mean, var = xg.mean(axis=(2, 3, 4), keepdims=True), xg.var(axis=(2, 3, 4), keepdims=True)
        return ((xg - mean) / np.sqrt(var + EPS)).reshape(x.shape), mean.reshape(n, groups)
    axes = {"batch": (0, 2, 3), "layer": (1, 2, 3), "instance": (2, 3)}[kind]
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS), np.squeeze(mean)


KINDS = ["batch", "layer", "instance", "group"]
SHARED_BY = {"batch": "one channel across the batch and positions (N, H, W)",
             "layer": "one example across all channels and positions (C, H, W)",
             "instance": "one example and one channel (H, W)",
             "group": f"one example and a group of {C // GROUPS} channels (C/G, H, W)"}  # fmt: skip


def _set_ids(kind: str) -> np.ndarray:
    """(N, C): which statistics set each (example, channel) pair belongs to, for the figure."""
    n, c = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
    return {"batch": c, "layer": n, "instance": n * C + c, "group": n * GROUPS + c // (C // GROUPS)}[kind]


def norms_example(out_dir: str | Path | None = None, seed: int = 0) -> TeachingResult:
    """Normalise one (2, 4, 2, 2) tensor four ways; the figure colours the (example, channel) grid by
    which values share a mean and variance."""
    x = np.round(np.random.default_rng(seed).normal(5, 3, size=(N, C, H, W)), 1)
    values: dict[str, Any] = {"x": x, "shape": [N, C, H, W], "groups": GROUPS, "norms": {}}
    fig = new_figure(12, 3.2)
    for i, kind in enumerate(KINDS):
        y, mean = normalise(x, kind)
        values["norms"][kind] = {"shared_by": SHARED_BY[kind], "sets": int(np.size(mean)),
                                 "values_per_set": int(x.size // np.size(mean)), "means": mean, "y": y}  # fmt: skip
        ax = fig.add_subplot(1, 4, i + 1)
        ids = _set_ids(kind)
        ax.imshow(ids, cmap="tab10", vmin=0, vmax=9)
        for (r, c), s in np.ndenumerate(ids):
            ax.text(c, r, f"set {s}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(C), [f"ch {c}" for c in range(C)], fontsize=7)
        ax.set_yticks(range(N), [f"ex {n}" for n in range(N)], fontsize=7)
        ax.set_title(f"{kind} norm: {int(np.size(mean))} sets of {x.size // np.size(mean)}", fontsize=9)
    fig.suptitle("which values share one mean and variance (each cell holds H x W = 4 values)")
    fig.tight_layout()
    return save_result(fig, TeachingResult("norms", values), out_dir)


def norms_text(result: TeachingResult) -> str:
    v = result.values
    x = v["x"]
    lines = [f"x has shape (N, C, H, W) = {tuple(v['shape'])}; example 0, channel 0 holds {x[0, 0].ravel().tolist()}"]
    for kind, info in v["norms"].items():
        means = ", ".join(f"{m:.3f}" for m in np.ravel(info["means"]))
        first = ", ".join(f"{a:+.3f}" for a in info["y"][0, 0].ravel())
        lines += [f"{kind:<8} norm: statistics over {info['shared_by']}",
                  f"          {info['sets']} sets of {info['values_per_set']} values; means {means}",
                  f"          example 0, channel 0 becomes [{first}]"]  # fmt: skip
    return "\n".join(lines)
