"""Why convolutions: seed 001's fully connected network against its CNN on MNIST, and what weight
sharing does and does not buy, computed rather than claimed.

Parameters come from the zoo's ``plain_mlp`` (seed 001's PlainNN) and ``mnist_cnn`` (its MNIST_CNN),
built on the meta device: 535,818 against 1,625,866. The CNN is the larger one, because its single
pooling stage leaves 64 x 14 x 14 = 12,544 features for a dense head (docs/seed-errata.md). The
shift experiment moves a small shape on a blank canvas and measures each stage's output change:
a convolution is translation *equivariant* (shift the input, the map shifts by the same amount,
exactly), not invariant; a 2x2 max pool is invariant only to some shifts; global max pooling is
invariant; a dense layer is neither (Goodfellow et al., Deep Learning, section 9.2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.numpy_engine import reference as R
from cnnlab.teach.base import TeachingResult, new_figure, save_result

SIZE = 16
SHIFT = (3, 2)  # rows, columns; the shape stays away from the border, so a roll is a true translation
EDGE = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])  # a Sobel-like vertical-edge filter


def _canvas() -> np.ndarray:
    """A 16x16 blank image holding an 'L' with a short bar: edges in two directions, off-centre."""
    x = np.zeros((SIZE, SIZE))
    x[3:9, 4] = 1.0
    x[8, 4:8] = 1.0
    x[5, 6:8] = 0.5
    return x


def _conv(x: np.ndarray) -> np.ndarray:
    return R.conv2d(x[None, None], EDGE[None, None], padding=1)[0, 0]  # (16, 16)


def _shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    return np.roll(x, (dy, dx), axis=(0, 1))


def param_counts() -> dict[str, dict[str, int]]:
    """Per-layer parameter counts of the zoo's plain_mlp and mnist_cnn on 1x28x28 (meta device)."""
    import torch

    from cnnlab.models.summary import meta_model

    out: dict[str, dict[str, int]] = {}
    for name in ("plain_mlp", "mnist_cnn"):
        m = meta_model(name, num_classes=10, in_channels=1, input_size=28)
        counts: dict[str, int] = {}
        for mod in m.modules():  # conv1, conv2, fc1, ... in forward order, as the seed names them
            if n := sum(p.numel() for p in mod.parameters(recurse=False)):
                kind = "conv" if isinstance(mod, torch.nn.Conv2d) else "fc"
                counts[f"{kind}{sum(k.startswith(kind) for k in counts) + 1}"] = n
        out[name] = counts | {"total": sum(counts.values())}
    return out


def shift_experiment() -> dict[str, Any]:
    """How much each stage's output changes when the input moves by ``SHIFT`` (max absolute difference)."""
    x = _canvas()
    xs = _shift(x, *SHIFT)
    y, ys = _conv(x), _conv(xs)
    dense = np.random.default_rng(0).normal(0, 0.1, (10, SIZE * SIZE))  # a random dense layer, 256 -> 10

    def pool2(m):
        return R.maxpool2d(m[None, None], 2)[0, 0]

    y1 = _conv(_shift(x, 0, 1))  # a one-pixel shift: not a multiple of the pool's stride
    changes = {
        "conv output, as computed": np.abs(ys - y).max(),
        "conv output, shifted back": np.abs(_shift(ys, -SHIFT[0], -SHIFT[1]) - y).max(),
        "2x2 max pool, 1-px shift": np.abs(pool2(y1) - pool2(y)).max(),
        "2x2 max pool, 2-px shift, shifted back": np.abs(_shift(pool2(_conv(_shift(x, 0, 2))), 0, -1) - pool2(y)).max(),
        "global max pool": abs(ys.max() - y.max()),
        "dense layer on the pixels": np.abs(dense @ xs.ravel() - dense @ x.ravel()).max(),
    }
    return {"image": x, "shifted": xs, "conv": y, "conv_shifted": ys,
            "equivariance_error": _shift(y, *SHIFT) - ys, "changes": changes}  # fmt: skip


def why_cnn_example(out_dir: str | Path | None = None) -> TeachingResult:
    """The parameter counts and the shift experiment, with a figure of the maps and the changes."""
    values = {"params": param_counts(), **shift_experiment()}
    fig = new_figure(13, 5.6)
    panels = [
        ("input", "image"),
        (f"input shifted by {SHIFT}", "shifted"),
        ("conv(input)", "conv"),
        ("conv(shifted input)", "conv_shifted"),
        ("shift(conv(x)) - conv(shift(x))", "equivariance_error"),
    ]
    for i, (title, key) in enumerate(panels):
        ax = fig.add_subplot(2, 5, i + 1)
        m = values[key]
        lim = max(1e-9, np.abs(values["conv"]).max()) if key.startswith(("conv", "equi")) else 1.0
        ax.imshow(m, cmap="gray" if i < 2 else "RdBu_r", vmin=-lim if i >= 2 else 0, vmax=lim)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(2, 1, 2)
    names, vals = list(values["changes"]), list(values["changes"].values())
    bars = ax.barh(range(len(names)), vals, color=["C0" if v > 1e-12 else "C2" for v in vals])
    ax.bar_label(bars, labels=[f"{v:.3g}" for v in vals], fontsize=8, padding=3)
    ax.set_yticks(range(len(names)), names, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("largest change of the output when the input moves (0 = unchanged)", fontsize=9)
    ax.set_xlim(0, max(vals) * 1.15)
    fig.tight_layout()
    return save_result(fig, TeachingResult("why_cnn", values), out_dir)


def why_cnn_text(result: TeachingResult) -> str:
    v = result.values
    mlp, cnn = v["params"]["plain_mlp"], v["params"]["mnist_cnn"]
    lines = ["parameters on 1x28x28 MNIST (the zoo's copies of the plain network and the CNN of the source):"]
    for name, counts in (("plain_mlp (PlainNN)", mlp), ("mnist_cnn (MNIST_CNN)", cnn)):
        layers = ", ".join(f"{k} {n:,}" for k, n in counts.items() if k != "total")
        lines.append(f"  {name:<22} {counts['total']:>10,}   ({layers})")
    lines += [f"  the CNN has {cnn['total'] / mlp['total']:.1f}x as many: one 2x2 pool leaves 64*14*14 = 12,544 "
              f"features, and fc1 maps them to 128 with {cnn['fc1']:,} weights; its two convs hold only "
              f"{cnn['conv1'] + cnn['conv2']:,}", "",
              f"moving the input by {SHIFT} pixels (rows, columns) changes each output by at most:"]  # fmt: skip
    lines += [f"  {k:<40} {c:.3g}" for k, c in v["changes"].items()]
    lines += [
        "a convolution is translation equivariant (its map moves with the input, exactly), not invariant;",
        "pooling gives invariance only to shifts it absorbs, global pooling to all; a dense layer to none.",
    ]
    return "\n".join(lines)
