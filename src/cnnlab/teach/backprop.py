"""Backpropagation by hand on the 5x5 example: a conv layer, then 2x2 max pooling (stride 1).

Forward: the 5x5 binary image ``x`` with the 3x3 "X" filter ``w`` (bias 0) gives the 3x3 map
``y``; 2x2 max pooling with stride 1 gives the 2x2 map ``p``. Backward: the layers above send
``G = dL/dp``; max pooling routes each ``G[i, j]`` to the single pixel of ``y`` that won window
(i, j) (the first maximum, row by row, on ties; a pixel that wins two overlapping windows gets
both); then the convolution's gradients are ``dW[m, n] = sum_ij dy[i, j] x[i + m, j + n]``,
``dX[i + m, j + n] += dy[i, j] w[m, n]`` and ``db = sum_ij dy[i, j]``. Every number comes from the
plain-loop reference (:mod:`cnnlab.numpy_engine.reference`) and is checked against torch's
autograd when torch is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.numpy_engine import reference as R
from cnnlab.teach.base import TeachingResult, new_figure, save_result
from cnnlab.teach.conv import BINARY_IMAGE, X_FILTER, _draw_matrix, _fmt_matrix

UPSTREAM = [[1.0, 2.0], [-1.0, 0.5]]  # dL/dp: what the layers above the pooling send back


def _routing(y: np.ndarray, k: int = 2) -> list[dict[str, Any]]:
    """For each pooling window of ``y`` (H, W), stride 1: its values, the winner and whether it tied."""
    rows = []
    for i in range(y.shape[0] - k + 1):
        for j in range(y.shape[1] - k + 1):
            win = y[i : i + k, j : j + k]
            m, n = np.unravel_index(np.argmax(win), win.shape)  # the first maximum wins
            rows.append({"window": (i, j), "values": win.ravel(), "winner": (i + m, j + n),
                         "ties": int((win == win.max()).sum())})  # fmt: skip
    return rows


def _autograd_check(x, w, b, upstream) -> dict[str, np.ndarray] | None:
    """The same gradients from torch's autograd (None when torch is not installed)."""
    try:
        import torch
    except ImportError:
        return None
    xt, wt, bt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, w, b))
    p = torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(xt, wt, bt), 2, stride=1)
    p.backward(torch.tensor(upstream, dtype=torch.float64))
    return {"dx": xt.grad.numpy(), "dw": wt.grad.numpy(), "db": bt.grad.numpy()}


def backprop_example(out_dir: str | Path | None = None) -> TeachingResult:
    """Forward and backward through conv -> max pool on the 5x5 example, every intermediate kept."""
    x = np.asarray(BINARY_IMAGE, dtype=float)[None, None]  # (1, 1, 5, 5)
    w = np.asarray(X_FILTER, dtype=float)[None, None]  # (1, 1, 3, 3)
    b = np.zeros(1)
    G = np.asarray(UPSTREAM)[None, None]  # (1, 1, 2, 2)
    y = R.conv2d(x, w, b)  # (1, 1, 3, 3)
    p = R.maxpool2d(y, 2, 1)  # (1, 1, 2, 2)
    dy = R.maxpool2d_backward(G, y, 2, 1)  # (1, 1, 3, 3): G routed to the winners
    dx, dw, db = R.conv2d_backward(dy, x, w)
    torch_grads = _autograd_check(x, w, b, G)
    values = {"x": x[0, 0], "w": w[0, 0], "y": y[0, 0], "p": p[0, 0], "upstream": G[0, 0], "dy": dy[0, 0],
              "dW": dw[0, 0], "dX": dx[0, 0], "db": float(db[0]), "routing": _routing(y[0, 0])}  # fmt: skip
    if torch_grads is not None:
        values["max_abs_diff_vs_torch"] = {
            "dW": float(np.abs(torch_grads["dw"] - dw).max()),
            "dX": float(np.abs(torch_grads["dx"] - dx).max()),
            "db": float(np.abs(torch_grads["db"] - db).max()),
        }
    fig = new_figure(15, 3.2)
    winners = {r["winner"] for r in values["routing"]}
    panels = [("x (input)", values["x"], "Blues"), ("w (filter)", values["w"], "coolwarm"),
              (f"y = conv(x, w); winners: {sorted(winners)}", values["y"], "Greens"),
              ("dL/dy: G routed to the winners", values["dy"], "coolwarm"),
              ("dL/dW", values["dW"], "coolwarm"), ("dL/dX", values["dX"], "coolwarm")]  # fmt: skip
    for i, (title, m, cmap) in enumerate(panels):
        _draw_matrix(fig.add_subplot(1, len(panels), i + 1), m, title, cmap=cmap)
    fig.suptitle(f"backprop through conv 3x3 -> max pool 2x2 (stride 1), upstream G = {UPSTREAM}; db = {db[0]:g}")
    return save_result(fig, TeachingResult("backprop", values), out_dir)


def backprop_text(result: TeachingResult) -> str:
    """The forward pass, the routing through max pooling, then dW (one entry expanded), dX and db."""
    v = result.values
    x, dy = v["x"], v["dy"]
    lines = ["forward: y = conv(x, w), 3x3 filter, stride 1, no padding, bias 0", _fmt_matrix(v["y"]),
             "p = maxpool 2x2, stride 1:", _fmt_matrix(v["p"]),
             "", "backward: the layers above send G = dL/dp:", _fmt_matrix(v["upstream"]),
             "max pooling routes each G[i,j] to the pixel of y that won window (i,j):"]  # fmt: skip
    G = v["upstream"]
    for r in v["routing"]:
        (i, j), (wi, wj) = r["window"], r["winner"]
        tie = f" (first of {r['ties']} tied maxima)" if r["ties"] > 1 else ""
        nums = ", ".join(f"{a:g}" for a in r["values"])
        lines.append(f"  window ({i},{j}): max({nums}) is y[{wi},{wj}]{tie} -> dy[{wi},{wj}] += {G[i, j]:g}")
    terms = " + ".join(f"{dy[i, j]:g}*{x[i, j]:g}" for i in range(3) for j in range(3) if dy[i, j] != 0)
    lines += ["dL/dy (zero where no window was won; a pixel that won twice sums both):", _fmt_matrix(dy),
              "", "dW[m,n] = sum_ij dy[i,j] * x[i+m, j+n]; for example", f"  dW[0,0] = {terms} = {v['dW'][0, 0]:g}",
              "dW =", _fmt_matrix(v["dW"]),
              "dX[i+m, j+n] += dy[i,j] * w[m,n] (each output sends its gradient back through the filter):",
              _fmt_matrix(v["dX"]), f"db = sum_ij dy[i,j] = {v['db']:g}"]  # fmt: skip
    if "max_abs_diff_vs_torch" in v:
        d = v["max_abs_diff_vs_torch"]
        lines.append(f"torch autograd agrees: max |difference| dW {d['dW']:.1e}, dX {d['dX']:.1e}, db {d['db']:.1e}")
    return "\n".join(lines)
