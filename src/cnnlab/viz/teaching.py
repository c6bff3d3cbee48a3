"""Teaching visuals: step-by-step convolution and pooling on the seeds' own example matrices.

Every example is computed here, not copied: seed 004's 5x5 binary image with the 3x3 "X" filter
(first output 4), seed 002's vertical-edge image and its 3x3 patch example, and the 4x4 pooling
matrices of seeds 001 and 002 (max, average, global average, global max). Each ``*_example``
function returns a :class:`TeachingResult` holding the numbers, and when given ``out_dir`` writes a
PNG (matplotlib, Agg canvas, no pyplot state) and a JSON with the same numbers beside it, so tests
and students can check the figure against the arithmetic. ``*_text`` functions render the same
result for the terminal (``cnnlab teach conv`` / ``cnnlab teach pool``). Several values printed in
the seeds are wrong; ``docs/seed-errata.md`` lists them next to the values computed here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.arithmetic import conv_output_size, pool_output_size
from cnnlab.errors import CnnlabError, did_you_mean

# --- the seeds' example matrices -------------------------------------------------------------
# seed 004, section 1.1: a 5x5 binary image and a 3x3 filter with ones on the corners and centre
SEED004_IMAGE = [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]
SEED004_FILTER = [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
# seed 002, "Concrete Example: Edge Detection": a dark region (10) and a bright one (100)
SEED002_EDGE_IMAGE = [[10] * 5, [10] * 5, [10, 10, 100, 100, 100], [10, 10, 100, 100, 100], [10, 10, 100, 100, 100]]
VERTICAL_EDGE = [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]
# seed 002, "Convolutional Layers" step 3: one 3x3 patch times the vertical-edge filter
SEED002_PATCH = [[10, 20, 30], [40, 50, 60], [70, 80, 90]]
# 4x4 pooling inputs: seed 001 "Pooling Example" and seed 002 "Types of Pooling"
SEED001_POOL = [[1, 3, 2, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
SEED002_POOL = [[1, 3, 2, 4], [5, 6, 1, 2], [7, 8, 9, 1], [3, 4, 2, 5]]

CONV_EXAMPLES: dict[str, dict[str, Any]] = {
    "seed004": {"image": SEED004_IMAGE, "kernel": SEED004_FILTER, "title": "seed 004: 5x5 image, 3x3 filter"},
    "edge": {"image": SEED002_EDGE_IMAGE, "kernel": VERTICAL_EDGE, "title": "seed 002: vertical-edge detector"},
    "patch": {"image": SEED002_PATCH, "kernel": VERTICAL_EDGE, "title": "seed 002: one 3x3 patch"},
}
POOL_EXAMPLES: dict[str, dict[str, Any]] = {
    "seed001": {"matrix": SEED001_POOL, "title": "seed 001: 4x4 max pooling example"},
    "seed002": {"matrix": SEED002_POOL, "title": "seed 002: 4x4 pooling examples"},
}


@dataclass
class TeachingResult:
    """Numbers behind one teaching figure, plus where the PNG and JSON went (None if not written)."""

    name: str
    values: dict[str, Any]
    panels: int = 0
    png: Path | None = None
    json: Path | None = None
    size_px: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def new_figure(width_in: float, height_in: float, dpi: int = 100):
    """A matplotlib Figure on an Agg canvas (no pyplot, so nothing global and no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_result(fig, result: TeachingResult, out_dir: str | Path | None) -> TeachingResult:
    """Write ``<name>.png`` and ``<name>.json`` (numbers, panel count, pixel size) into ``out_dir``."""
    result.panels = len(fig.axes)
    w_in, h_in = fig.get_size_inches()
    result.size_px = (round(w_in * fig.dpi), round(h_in * fig.dpi))
    if out_dir is None:
        return result
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.png = out / f"{result.name}.png"
    fig.savefig(result.png, dpi=fig.dpi)  # no bbox="tight": the pixel size stays what the JSON says
    payload = {"name": result.name, "panels": result.panels, "size_px": list(result.size_px), "values": result.values}
    result.json = out / f"{result.name}.json"
    result.json.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
    return result


def _pick(table: dict[str, Any], name: str, what: str) -> dict[str, Any]:
    if name not in table:
        raise CnnlabError(f"unknown {what} example {name!r}.{did_you_mean(name, table)} Known: {', '.join(table)}.")
    return table[name]


# --- convolution -----------------------------------------------------------------------------
def conv2d_steps(image: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: int = 0) -> dict[str, Any]:
    """Valid cross-correlation (what CNN layers compute) with every window's products recorded.

    Returns a dict with ``output`` (out_h, out_w), ``steps`` (one per output: row, col, the
    window, element-wise products and their sum) and the output-size formula with numbers.
    """
    image = np.asarray(image, dtype=float)  # (H, W)
    kernel = np.asarray(kernel, dtype=float)  # (k, k)
    k = kernel.shape[0]
    padded = np.pad(image, padding)
    out_h = conv_output_size(image.shape[0], k, stride, padding)
    out_w = conv_output_size(image.shape[1], k, stride, padding)
    output = np.zeros((out_h, out_w))
    steps = []
    for i in range(out_h):
        for j in range(out_w):
            window = padded[i * stride : i * stride + k, j * stride : j * stride + k]
            products = window * kernel
            output[i, j] = products.sum()
            steps.append({"row": i, "col": j, "window": window, "products": products, "sum": output[i, j]})
    n = image.shape[0]
    formula = f"out = floor(({n} + 2*{padding} - {k}) / {stride}) + 1 = {out_h}"
    return {"output": output, "steps": steps, "formula": formula, "image": image, "kernel": kernel}


def _draw_matrix(ax, m: np.ndarray, title: str, box: tuple[int, int, int] | None = None, cmap: str = "Blues") -> None:
    lo, hi = min(m.min(), 0), max(m.max(), 1)
    if m.size == 1:  # a single number: keep the cell light so the value stays readable
        lo, hi = lo - abs(hi), hi * 2
    ax.imshow(m, cmap=cmap, vmin=lo, vmax=hi)
    for (r, c), v in np.ndenumerate(m):
        dark = (v - lo) / (hi - lo + 1e-12) > 0.6  # white text on dark cells
        ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=8, color="white" if dark else "black")
    if box is not None:
        from matplotlib.patches import Rectangle

        r, c, k = box
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), k, k, fill=False, edgecolor="red", linewidth=2))
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def conv_example(name: str = "seed004", out_dir: str | Path | None = None, max_panels: int = 9) -> TeachingResult:
    """Slide the example's filter over its image: one panel per output position (up to ``max_panels``)
    with the window outlined, plus the filter and the finished output map."""
    ex = _pick(CONV_EXAMPLES, name, "convolution")
    calc = conv2d_steps(np.array(ex["image"]), np.array(ex["kernel"]))
    steps = calc["steps"]
    shown = steps if len(steps) <= max_panels else steps[:: max(1, len(steps) // max_panels)][:max_panels]
    cols = 4
    rows = -(-(len(shown) + 2) // cols)
    fig = new_figure(3 * cols, 3 * rows)
    k = calc["kernel"].shape[0]
    for idx, st in enumerate(shown):
        ax = fig.add_subplot(rows, cols, idx + 1)
        _draw_matrix(ax, calc["image"], f"out[{st['row']},{st['col']}] = {st['sum']:g}", (st["row"], st["col"], k))
    _draw_matrix(fig.add_subplot(rows, cols, len(shown) + 1), calc["kernel"], "filter", cmap="coolwarm")
    _draw_matrix(
        fig.add_subplot(rows, cols, len(shown) + 2), calc["output"], "output\n" + calc["formula"], cmap="Greens"
    )
    fig.suptitle(ex["title"])
    values = {
        "image": calc["image"],
        "kernel": calc["kernel"],
        "output": calc["output"],
        "output_shape": list(calc["output"].shape),
        "formula": calc["formula"],
        "first_output": calc["output"][0, 0],
        "positions_shown": [[s["row"], s["col"]] for s in shown],
    }
    return save_result(fig, TeachingResult(f"conv_{name}", values, extra={"steps": steps}), out_dir)


def conv_example_text(result: TeachingResult) -> str:
    """The convolution worked example as terminal text: each window's products and their sum."""
    v = result.values
    lines = [f"{result.name}: image {np.shape(v['image'])}, filter {np.shape(v['kernel'])}", v["formula"], ""]
    for st in result.extra["steps"]:
        terms = " + ".join(
            f"{a:g}*{b:g}" for a, b in zip(st["window"].ravel(), np.asarray(v["kernel"]).ravel(), strict=True)
        )
        lines.append(f"out[{st['row']},{st['col']}] = {terms} = {st['sum']:g}")
    lines += ["", "output:", _fmt_matrix(v["output"])]
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


def pool_example(name: str = "seed002", out_dir: str | Path | None = None, kernel: int = 2) -> TeachingResult:
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
    return save_result(fig, TeachingResult(f"pool_{name}", values), out_dir)


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
    ]
    return "\n".join(lines)
