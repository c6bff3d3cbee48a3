"""The training engine's own optimisers on a 2-D test function: AdaGrad, AdaDelta, RMSProp, Adam,
AdamW, RAdam, NAdam, LAMB and Adam with Lookahead, next to SGD with momentum.

Unlike :mod:`cnnlab.teach.optim` (update rules written out in NumPy), these paths come from
``cnnlab.engine.optim.build_optimizer``, the code ``cnnlab train`` runs, applied to a single 2-D
parameter: what differs is only how each one scales and smooths the gradient.

* AdaGrad (Duchi et al. 2011): divide by the root of the *sum* of all squared gradients, so the
  step only shrinks;
* AdaDelta (Zeiler 2012): running averages of squared gradients *and* of squared updates, so the
  step has the units of the weights (its ``lr`` is a plain multiplier, 1.0 by default);
* AdamW (Loshchilov & Hutter 2019): Adam with weight decay applied to the weights directly;
* RAdam (Liu et al. 2020): Adam whose adaptive step is switched on gradually while the variance
  estimate is unreliable (its first steps are SGD with momentum);
* NAdam (Dozat 2016): Adam with Nesterov's look-ahead momentum;
* LAMB (You et al. 2020): Adam's direction rescaled per tensor by ||w|| / ||update|| (trust ratio);
* Lookahead (Zhang et al. 2019): every k steps move "slow" weights a fraction alpha toward the
  fast ones and restart from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.teach.base import TeachingResult, new_figure, save_result
from cnnlab.teach.optim import SURFACES, path_summary

# name -> (engine optimiser, learning rate, Lookahead k); weight decay 0 so every path is the pure rule
ENGINE_RUNS: dict[str, tuple[str, float, int]] = {
    "sgd+momentum": ("sgd", 0.03, 0),
    "adagrad": ("adagrad", 1.0, 0),
    "adadelta": ("adadelta", 20.0, 0),
    "rmsprop": ("rmsprop", 0.03, 0),
    "adam": ("adam", 0.3, 0),
    "adamw": ("adamw", 0.3, 0),
    "radam": ("radam", 0.3, 0),
    "nadam": ("nadam", 0.3, 0),
    "lamb": ("lamb", 0.3, 0),
    "adam+lookahead": ("adam", 0.3, 5),
}


def engine_path(surface, name: str, steps: int) -> np.ndarray:
    """Points visited by the engine's optimiser ``name`` (a key of ``ENGINE_RUNS``): (steps + 1, 2)."""
    import torch

    from cnnlab.config import OptimConfig
    from cnnlab.engine.optim import build_optimizer

    opt_name, lr, k = ENGINE_RUNS[name]
    w = torch.nn.Parameter(torch.tensor(surface.start, dtype=torch.float64))
    opt = build_optimizer([w], OptimConfig(name=opt_name, lr=lr, weight_decay=0.0, lookahead_k=k))
    path = [w.detach().numpy().copy()]
    for _ in range(steps):
        w.grad = torch.tensor(surface.grad(w.detach().numpy()))
        opt.step()
        path.append(w.detach().numpy().copy())
    return np.array(path)


def engine_optimizers_example(surface: str = "quadratic", out_dir: str | Path | None = None) -> TeachingResult:
    """Every engine optimiser from the surface's start; left: the paths, right: the loss per step."""
    s = SURFACES.create(surface)
    paths = {name: engine_path(s, name, s.steps) for name in ENGINE_RUNS}
    fig = new_figure(13, 5)
    ax = fig.add_subplot(1, 2, 1)
    xmin, xmax, ymin, ymax = s.box
    xs, ys = np.meshgrid(np.linspace(xmin, xmax, 100), np.linspace(ymin, ymax, 100))
    contours = ax.contour(xs, ys, s.f(xs, ys), levels=20, cmap="Greys", linewidths=0.6)
    ax.clabel(contours, levels=contours.levels[::4], fontsize=6, fmt="%.3g")
    loss_ax = fig.add_subplot(1, 2, 2)
    for name, p in paths.items():
        label = f"{name} (lr {ENGINE_RUNS[name][1]:g})"
        ax.plot(p[:, 0], p[:, 1], "-", lw=1.1, label=label)
        loss_ax.plot([s.value(w) - min(0.0, s.value(np.array(s.minima[0]))) + 1e-12 for w in p], label=label)
    ax.plot(*s.start, "g*", ms=12)
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_title(f"{s.title}: the engine's optimisers", fontsize=9)
    ax.legend(fontsize=6, loc="lower right")
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("loss above the minimum")
    loss_ax.legend(fontsize=6)
    fig.tight_layout()
    values: dict[str, Any] = {"surface": surface, "runs": {n: {"optimizer": o, "lr": lr, "lookahead_k": k}
                                                          for n, (o, lr, k) in ENGINE_RUNS.items()},
                              "paths": {n: path_summary(s, p) for n, p in paths.items()}}  # fmt: skip
    return save_result(fig, TeachingResult(f"optimizers_engine_{surface}", values), out_dir)


def engine_optimizers_text(result: TeachingResult) -> str:
    v = result.values
    lines = [f"the training engine's optimisers on {v['surface']}, weight decay 0:"]
    for name, s in v["paths"].items():
        run = v["runs"][name]
        end = f"({s['end'][0]:+.3f}, {s['end'][1]:+.3f})"
        lines.append(f"  {name:<15} lr {run['lr']:<5g} {s['steps']:>4} steps  end {end}  "
                     f"loss {s['start_loss']:.3g} -> {s['final_loss']:.3g}")  # fmt: skip
    return "\n".join(lines)
