"""Teaching visuals: step-by-step convolution and pooling on small worked examples.

Every example is computed here, not copied: a 5x5 binary image with a 3x3 "X" filter (first output
4), a vertical-edge detector on a dark/bright image and on one 3x3 patch, and two 4x4 pooling
matrices (max, average, global average, global max). Each ``*_example`` function returns a
:class:`TeachingResult` holding the numbers, and when given ``out_dir`` writes a PNG (matplotlib,
Agg canvas, no pyplot state) and a JSON with the same numbers beside it, so tests and students can
check the figure against the arithmetic. ``*_text`` functions render the same result for the
terminal (``cnnlab teach conv`` / ``cnnlab teach pool``). The examples come from the project's
source notes (``docs/seed-errata.md`` says which); where a source prints a wrong value, the text
output says so with :func:`cnnlab.teach.base.correction`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.arithmetic import conv_output_size, pool_output_size
from cnnlab.errors import CnnlabError
from cnnlab.teach.base import TeachingResult, _pick, corrections_text, new_figure, save_result

# --- the worked examples' matrices ---------------------------------------------------------------
# a 5x5 binary image and a 3x3 filter with ones on the corners and centre (an "X")
BINARY_IMAGE = [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]
X_FILTER = [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
# a dark region (10) and a bright block (100) in its lower right
EDGE_IMAGE = [[10] * 5, [10] * 5, [10, 10, 100, 100, 100], [10, 10, 100, 100, 100], [10, 10, 100, 100, 100]]
VERTICAL_EDGE = [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]
# one 3x3 patch times the vertical-edge filter
PATCH = [[10, 20, 30], [40, 50, 60], [70, 80, 90]]
# the numbers 1..9 and a left-minus-right kernel: each row gives left - right = -2, so the output is -6
NUMBERS = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
LEFT_MINUS_RIGHT = [[1, 0, -1], [1, 0, -1], [1, 0, -1]]
# 4x4 pooling inputs: the numbers 1..16 (with one swap), and a mixed matrix
SEQUENCE_POOL = [[1, 3, 2, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
MIXED_POOL = [[1, 3, 2, 4], [5, 6, 1, 2], [7, 8, 9, 1], [3, 4, 2, 5]]

CONV_EXAMPLES: dict[str, dict[str, Any]] = {
    "binary": {"image": BINARY_IMAGE, "kernel": X_FILTER, "title": "5x5 binary image, 3x3 X filter"},
    "edge": {
        "image": EDGE_IMAGE, "kernel": VERTICAL_EDGE, "title": "vertical-edge detector on a dark/bright image",
        "errata": [("[[0, 0, 270], [0, 0, 270], [0, 0, 270]]", "[[90, 90, 0], [180, 180, 0], [270, 270, 0]]",
                    "the bright block starts in row 2, so each window row that reaches it adds 90 in the first two "
                    "columns, and the last column's windows lie inside the flat bright block (response 0)")],
    },
    "patch": {"image": PATCH, "kernel": VERTICAL_EDGE, "title": "vertical-edge filter on one 3x3 patch"},
    "numbers": {"image": NUMBERS, "kernel": LEFT_MINUS_RIGHT, "title": "kernel [1, 0, -1] on the numbers 1..9"},
}  # fmt: skip
POOL_EXAMPLES: dict[str, dict[str, Any]] = {
    "sequence": {"matrix": SEQUENCE_POOL, "title": "4x4 max pooling of the numbers 1..16"},
    "mixed": {
        "matrix": MIXED_POOL, "title": "4x4 pooling examples",
        "errata": [
            ("max pool [[3, 4], [8, 9]]", "[[6, 4], [8, 9]]", "the top-left window holds 1, 3, 5, 6 and its max is 6"),
            ("global average 3.875", "3.9375", "the sixteen values add up to 63 and 63 / 16 = 3.9375"),
        ],
    },
}  # fmt: skip


# --- convolution -----------------------------------------------------------------------------
def conv2d_steps(image: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: int = 0) -> dict[str, Any]:
    """Cross-correlation (what CNN layers compute) with every window's products recorded.

    ``image`` is (H, W) or (C, H, W); ``kernel`` is (k, k) or (C, k, k): with C channels the
    products are summed over the channels too (one filter, one output map). Returns a dict with
    ``output`` (out_h, out_w), ``steps`` (one per output: row, col, the window, element-wise
    products, the per-channel sums and their total) and the output-size formula with numbers.
    """
    image = np.asarray(image, dtype=float)
    kernel = np.asarray(kernel, dtype=float)
    image3 = image[None] if image.ndim == 2 else image  # (C, H, W)
    kernel3 = kernel[None] if kernel.ndim == 2 else kernel  # (C, k, k)
    if kernel3.shape[0] != image3.shape[0]:
        raise CnnlabError(
            f"the kernel has {kernel3.shape[0]} channel(s) but the image has {image3.shape[0]}: "
            "give one k x k slice per image channel, or a 2-D kernel to use for every channel"
        )
    k = kernel3.shape[-1]
    padded = np.pad(image3, ((0, 0), (padding, padding), (padding, padding)))  # zeros around each channel
    out_h = conv_output_size(image3.shape[1], k, stride, padding)
    out_w = conv_output_size(image3.shape[2], k, stride, padding)
    output = np.zeros((out_h, out_w))
    steps = []
    for i in range(out_h):
        for j in range(out_w):
            window = padded[:, i * stride : i * stride + k, j * stride : j * stride + k]  # (C, k, k)
            products = window * kernel3
            per_channel = products.sum(axis=(1, 2))  # (C,)
            output[i, j] = per_channel.sum()
            steps.append({"row": i, "col": j, "window": window, "products": products, "channel_sums": per_channel,
                          "sum": output[i, j]})  # fmt: skip
    n = image3.shape[1]
    formula = f"out = floor(({n} + 2*{padding} - {k}) / {stride}) + 1 = {out_h}"
    return {"output": output, "steps": steps, "formula": formula, "image": image, "kernel": kernel,
            "padded": padded, "stride": stride, "padding": padding}  # fmt: skip


def _draw_matrix(
    ax, m: np.ndarray, title: str, box: tuple[int, int, int] | None = None, cmap: str = "Blues", numbers: bool = True
) -> None:
    lo, hi = min(m.min(), 0), max(m.max(), 1)
    if m.size == 1:  # a single number: keep the cell light so the value stays readable
        lo, hi = lo - abs(hi), hi * 2
    ax.imshow(m, cmap=cmap, vmin=lo, vmax=hi)
    for (r, c), v in np.ndenumerate(m) if numbers else ():
        dark = (v - lo) / (hi - lo + 1e-12) > 0.6  # white text on dark cells
        ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=8, color="white" if dark else "black")
    if box is not None:
        from matplotlib.patches import Rectangle

        r, c, k = box
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), k, k, fill=False, edgecolor="red", linewidth=2))
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


NUMBERS_UP_TO = 12  # larger matrices are drawn as pictures, without a number in every cell


def conv_example(
    name: str = "binary",
    out_dir: str | Path | None = None,
    max_panels: int = 9,
    *,
    image: np.ndarray | None = None,
    kernel: np.ndarray | None = None,
    stride: int = 1,
    padding: int = 0,
    title: str | None = None,
) -> TeachingResult:
    """Slide a filter over an image: one panel per output position (up to ``max_panels``) with the
    window outlined on the (zero-padded) first channel, plus the filter and the finished output map.

    ``name`` picks a built-in example; ``image`` / ``kernel`` replace its matrices (then ``name`` is
    only the file name, so a custom run never overwrites a built-in example's figure).
    """
    ex = _pick(CONV_EXAMPLES, name, "convolution") if image is None or kernel is None else {}
    image = np.asarray(ex["image"] if image is None else image, dtype=float)
    kernel = np.asarray(ex["kernel"] if kernel is None else kernel, dtype=float)
    calc = conv2d_steps(image, kernel, stride, padding)
    steps = calc["steps"]
    shown = steps if len(steps) <= max_panels else steps[:: max(1, len(steps) // max_panels)][:max_panels]
    cols = 4
    rows = -(-(len(shown) + 2) // cols)
    fig = new_figure(3 * cols, 3 * rows)
    k = kernel.shape[-1]
    shown_image = calc["padded"][0]  # (H + 2p, W + 2p): the first channel, with its zero border
    numbers = max(shown_image.shape) <= NUMBERS_UP_TO
    for idx, st in enumerate(shown):
        ax = fig.add_subplot(rows, cols, idx + 1)
        box = (st["row"] * stride, st["col"] * stride, k)
        _draw_matrix(ax, shown_image, f"out[{st['row']},{st['col']}] = {st['sum']:g}", box, numbers=numbers)
    kernel2 = kernel if kernel.ndim == 2 else kernel[0]
    channels = "" if kernel.ndim == 2 else f" (channel 0 of {kernel.shape[0]})"
    _draw_matrix(fig.add_subplot(rows, cols, len(shown) + 1), kernel2, "filter" + channels, cmap="coolwarm")
    out_ax = fig.add_subplot(rows, cols, len(shown) + 2)
    _draw_matrix(out_ax, calc["output"], "output\n" + calc["formula"], cmap="Greens",
                 numbers=max(calc["output"].shape) <= NUMBERS_UP_TO)  # fmt: skip
    fig.suptitle(title or ex.get("title", "your image and filter") + f" (stride {stride}, padding {padding})")
    values = {
        "image": image, "kernel": kernel, "stride": stride, "padding": padding, "output": calc["output"],
        "output_shape": list(calc["output"].shape), "formula": calc["formula"],
        "first_output": calc["output"][0, 0], "positions_shown": [[s["row"], s["col"]] for s in shown],
    }  # fmt: skip
    suffix = "" if (stride, padding) == (1, 0) else f"_s{stride}_p{padding}"
    extra = {"steps": steps, "errata": ex.get("errata", []) if (stride, padding) == (1, 0) else []}
    return save_result(fig, TeachingResult(f"conv_{name}{suffix}", values, extra=extra), out_dir)


def _window_terms(window: np.ndarray, kernel: np.ndarray) -> str:
    return " + ".join(f"{a:g}*{b:g}" for a, b in zip(window.ravel(), kernel.ravel(), strict=True))


def conv_example_text(result: TeachingResult, max_lines: int = 30) -> str:
    """The convolution worked example as terminal text: each window's products and their sum (per
    channel when there are several), then the output map and any correction of the source."""
    v = result.values
    kernel = np.asarray(v["kernel"])
    kernel3 = kernel[None] if kernel.ndim == 2 else kernel
    lines = [f"{result.name}: image {np.shape(v['image'])}, filter {np.shape(kernel)}, "
             f"stride {v['stride']}, padding {v['padding']}", v["formula"], ""]  # fmt: skip
    steps = result.extra["steps"]
    for st in steps[:max_lines]:
        at = f"out[{st['row']},{st['col']}]"
        if len(kernel3) == 1:
            lines.append(f"{at} = {_window_terms(st['window'][0], kernel3[0])} = {st['sum']:g}")
            continue
        for c, (win, ker) in enumerate(zip(st["window"], kernel3, strict=True)):
            lines.append(f"{at} channel {c}: {_window_terms(win, ker)} = {st['channel_sums'][c]:g}")
        lines.append(f"{at} = " + " + ".join(f"{x:g}" for x in st["channel_sums"]) + f" = {st['sum']:g}")
    if len(steps) > max_lines:
        lines.append(f"... ({len(steps) - max_lines} more windows; every value is in the JSON)")
    out = np.asarray(v["output"])
    shown = _fmt_matrix(out) if max(out.shape) <= NUMBERS_UP_TO else f"({out.shape[0]}x{out.shape[1]}, in the JSON)"
    lines += ["", "output:", shown, *corrections_text(result.extra.get("errata", []))]
    return "\n".join(lines)


def _fmt_matrix(m: np.ndarray) -> str:
    m = np.asarray(m)
    width = max(len(f"{x:g}") for x in m.ravel())
    return "\n".join("[" + " ".join(f"{x:>{width}g}" for x in row) + "]" for row in m)


# --- pooling ---------------------------------------------------------------------------------
def pool2d(x: np.ndarray, kernel: int = 2, stride: int | None = None, mode: str = "max") -> np.ndarray:
    """Max or average pooling of a 2-D array with square windows (no padding)."""
    stride = kernel if stride is None else stride
    x = np.asarray(x, dtype=float)  # (H, W)
    oh, ow = pool_output_size(x.shape[0], kernel, stride), pool_output_size(x.shape[1], kernel, stride)
    reduce = {"max": np.max, "avg": np.mean}[mode]
    out = np.empty((oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[i, j] = reduce(x[i * stride : i * stride + kernel, j * stride : j * stride + kernel])
    return out


def pool_example(name: str = "mixed", out_dir: str | Path | None = None, kernel: int = 2) -> TeachingResult:
    """Max, average, global-average and global-max pooling of one 4x4 example, one panel each."""
    ex = _pick(POOL_EXAMPLES, name, "pooling")
    x = np.array(ex["matrix"], dtype=float)
    n = x.shape[0]
    out_size = pool_output_size(n, kernel)
    values = {
        "input": x,
        "max": pool2d(x, kernel, mode="max"),
        "avg": pool2d(x, kernel, mode="avg"),
        "global_avg": float(x.mean()),
        "global_max": float(x.max()),
        "global_sum": float(x.sum()),
        "formula": f"out = floor(({n} - {kernel}) / {kernel}) + 1 = {out_size}",
    }
    fig = new_figure(15, 3.4)
    axes = [fig.add_subplot(1, 5, i + 1) for i in range(5)]
    _draw_matrix(axes[0], x, f"input {n}x{n}\n{values['formula']}")
    from matplotlib.patches import Rectangle

    for r in range(0, n, kernel):  # outline the non-overlapping windows
        for c in range(0, n, kernel):
            axes[0].add_patch(Rectangle((c - 0.5, r - 0.5), kernel, kernel, fill=False, edgecolor="red", lw=1.5))
    _draw_matrix(axes[1], values["max"], f"max pool {kernel}x{kernel}, stride {kernel}", cmap="Greens")
    _draw_matrix(axes[2], values["avg"], f"average pool {kernel}x{kernel}, stride {kernel}", cmap="Greens")
    _draw_matrix(axes[3], np.array([[values["global_avg"]]]), f"global average\n{values['global_sum']:g} / {n * n}")
    _draw_matrix(axes[4], np.array([[values["global_max"]]]), "global max")
    fig.suptitle(ex["title"])
    extra = {"errata": ex.get("errata", [])}
    return save_result(fig, TeachingResult(f"pool_{name}", values, extra=extra), out_dir)


def pool_example_text(result: TeachingResult, kernel: int = 2) -> str:
    """The pooling worked example as terminal text, window by window."""
    v = result.values
    x = np.asarray(v["input"])
    lines = [f"{result.name}: input", _fmt_matrix(x), v["formula"], ""]
    for i in range(0, x.shape[0], kernel):
        for j in range(0, x.shape[1], kernel):
            win = x[i : i + kernel, j : j + kernel].ravel()
            nums = ", ".join(f"{w:g}" for w in win)
            lines.append(f"window ({i // kernel},{j // kernel}): max({nums}) = {win.max():g}; mean = {win.mean():g}")
    lines += [
        "",
        "max pool:",
        _fmt_matrix(v["max"]),
        "average pool:",
        _fmt_matrix(v["avg"]),
        f"global average = {v['global_sum']:g} / {x.size} = {v['global_avg']:g}",
        f"global max = {v['global_max']:g}",
        *corrections_text(result.extra.get("errata", [])),
    ]
    return "\n".join(lines)
