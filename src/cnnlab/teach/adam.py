"""One Adam step at a time: the moments m and v, their bias corrections, and the step they give.

Adam (Kingma & Ba 2015) keeps two running averages per weight, ``m`` of the gradient and ``v`` of
its square, both started at zero; dividing by ``1 - beta^t`` undoes that zero start, so the first
step is ``lr * g / |g|`` per coordinate whatever the gradient's scale. This module runs the
update of :class:`cnnlab.teach.optim.Adam` on a 2-D surface from its start and records every
intermediate number, then runs two formulas as a source printed them, to show what they would do:

* the second moment with ``(1 - beta1)`` instead of ``(1 - beta2)``: the first ``v_hat`` is
  ``(1 - beta1) / (1 - beta2) = 100`` times too large, so the first steps are 10x too short;
* RMSProp's update with the running average ``v`` as the direction instead of the gradient ``g``:
  ``v >= 0`` carries no sign, so every weight moves the same way whatever its gradient says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.teach.base import TeachingResult, correction, new_figure, save_result
from cnnlab.teach.optim import SURFACES

Array = np.ndarray


def adam_trace(
    grad, w0: Array, lr: float, steps: int, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, v_rate: float = None
) -> list[dict[str, Array]]:
    """Every number of ``steps`` Adam updates from ``w0``; ``v_rate`` replaces ``1 - b2`` (the slip)."""
    v_rate = 1 - b2 if v_rate is None else v_rate
    w, m, v = np.asarray(w0, dtype=float), np.zeros(2), np.zeros(2)
    rows = []
    for t in range(1, steps + 1):
        g = grad(w)  # (2,)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + v_rate * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        step = -lr * m_hat / (np.sqrt(v_hat) + eps)
        w = w + step
        rows.append({"t": t, "g": g, "m": m, "v": v, "m_hat": m_hat, "v_hat": v_hat, "step": step, "w": w})
    return rows


def rmsprop_slip_step(g: Array, lr: float, alpha: float = 0.9, eps: float = 1e-8) -> tuple[Array, Array]:
    """The first RMSProp step, correct (direction g) and as printed (direction v)."""
    v = (1 - alpha) * g**2
    return -lr * g / (np.sqrt(v) + eps), -lr * v / (np.sqrt(v) + eps)


def adam_steps(surface: str = "quadratic", steps: int = 3, out_dir: str | Path | None = None) -> TeachingResult:
    """Adam's first ``steps`` updates on ``surface`` with every intermediate number, the slipped
    variants, and a figure of |step| per coordinate over 30 steps for the correct and slipped rule."""
    s = SURFACES.create(surface)
    lr, w0 = s.adaptive_lr, np.array(s.start, dtype=float)
    rows = adam_trace(s.grad, w0, lr, steps)
    long_ok, long_slip = adam_trace(s.grad, w0, lr, 30), adam_trace(s.grad, w0, lr, 30, v_rate=0.1)
    rms_ok, rms_slip = rmsprop_slip_step(s.grad(w0), lr)
    values = {"surface": surface, "title": s.title, "lr": lr, "start": w0, "beta1": 0.9, "beta2": 0.999,
              "eps": 1e-8, "steps": rows, "slipped_first_step": long_slip[0]["step"],
              "rmsprop_first_step": rms_ok, "rmsprop_slipped_first_step": rms_slip}  # fmt: skip
    fig = new_figure(11, 3.6)
    ts = [r["t"] for r in long_ok]
    for i, coord in enumerate("xy"):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(ts, [abs(r["step"][i]) for r in long_ok], "-o", ms=3, label="Adam, v with (1 - beta2)")
        ax.plot(ts, [abs(r["step"][i]) for r in long_slip], "-s", ms=3, label="as printed: v with (1 - beta1)")
        ax.axhline(lr, color="grey", lw=0.8, ls="--", label=f"lr = {lr:g}")
        ax.set_xlabel("step t")
        ax.set_ylabel(f"|step| along {coord}")
        ax.set_yscale("log")
        ax.set_title(f"{s.title}: step length along {coord}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_result(fig, TeachingResult(f"adam_step_{surface}", values), out_dir)


def _vec(a: Array) -> str:
    return "[" + ", ".join(f"{x:+.6g}" for x in np.ravel(a)) + "]"


def adam_steps_text(result: TeachingResult) -> str:
    """Each step's g, m, v, m_hat, v_hat, step and new w, then what the slipped formulas would do."""
    v = result.values
    b1, b2, lr = v["beta1"], v["beta2"], v["lr"]
    lines = [f"Adam on {v['title']} from {_vec(v['start'])}: lr {lr:g}, beta1 {b1}, beta2 {b2}, eps {v['eps']:g}"]
    for r in v["steps"]:
        t = r["t"]
        terms = [
            ("g = grad(w)", r["g"]),
            (f"m = {b1}*m + {1 - b1:.1f}*g", r["m"]),
            (f"v = {b2}*v + {1 - b2:.3f}*g^2", r["v"]),
            (f"m_hat = m / (1 - {b1}^{t})", r["m_hat"]),
            (f"v_hat = v / (1 - {b2}^{t})", r["v_hat"]),
            ("step = -lr*m_hat/(sqrt(v_hat)+eps)", r["step"]),
            ("w = w + step", r["w"]),
        ]
        width = max(len(label) for label, _ in terms)
        lines += [f"{f't={t}' if i == 0 else '':<5}{label:<{width}} = {_vec(a)}" for i, (label, a) in enumerate(terms)]
    first, slip = v["steps"][0]["step"], v["slipped_first_step"]
    rms, rms_slip = v["rmsprop_first_step"], v["rmsprop_slipped_first_step"]
    lines += [
        "",
        correction(
            "v_t = beta2*v_(t-1) + (1 - beta1)*g_t^2", "v_t = beta2*v_(t-1) + (1 - beta2)*g_t^2",
            f"with (1 - beta1) the first v_hat is 0.1/0.001 = 100 times g^2, so the first step here would be "
            f"{_vec(slip)} instead of {_vec(first)} (10x shorter)",
        ),
        correction(
            "RMSProp's update w_t = w_(t-1) - lr/(sqrt(v_t) + eps) * v_t", "w_t = w_(t-1) - lr/(sqrt(v_t) + eps) * g_t",
            f"v_t >= 0 carries no sign: the first RMSProp step (lr {lr:g}, alpha 0.9) would be {_vec(rms_slip)}, "
            f"moving every weight down, where the gradient asks for {_vec(rms)}",
        ),
    ]  # fmt: skip
    return "\n".join(lines)


def adam_values(result: TeachingResult) -> dict[str, Any]:
    """The numbers a test or notebook compares with ``torch.optim.Adam``: w after each step."""
    return {"w": [r["w"] for r in result.values["steps"]], "lr": result.values["lr"]}
