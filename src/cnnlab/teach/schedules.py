"""Learning-rate schedules: the LR of every step for every registered schedule, and a warm-up.

The curves are not re-implemented here: each one is :func:`cnnlab.engine.schedulers.lr_curve`,
the schedule ``cnnlab train`` builds from ``sched.name``, run on a one-parameter SGD optimiser for
30 epochs of 10 steps at LR 0.1. Settings are chosen so every shape is visible in 30 epochs
(step every 10 epochs, cosine restarts every 10, cyclic half-cycles of 5); the JSON keeps them.
Sources: step/exponential/polynomial decay (classic), cosine and warm restarts (Loshchilov &
Hutter 2017), cyclic (Smith 2017), one-cycle (Smith & Topin 2018), warm-up (Goyal et al. 2017).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.teach.base import TeachingResult, new_figure, save_result

EPOCHS, STEPS_PER_EPOCH, LR = 30, 10, 0.1
# schedule -> settings that differ from the SchedConfig defaults; "cosine+warmup" is cosine after 3 warm-up epochs
SETTINGS: dict[str, dict[str, Any]] = {
    "none": {},
    "step": {"step_size": 10, "gamma": 0.1},
    "multistep": {"milestones": [10, 20], "gamma": 0.1},
    "exponential": {"gamma": 0.85},
    "polynomial": {"power": 2.0},
    "cosine": {"min_lr": 0.0},
    "cosine_restarts": {"restart_epochs": 10, "min_lr": 0.0},
    "cyclic": {"base_lr": 0.01, "cycle_epochs": 5},
    "onecycle": {"pct_start": 0.3},
    "plateau": {"patience": 4, "factor": 0.5},
    "cosine+warmup": {"warmup_epochs": 3, "min_lr": 0.0},
}


def schedule_curves(names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """``{name: {"settings": ..., "lr": [LR at every step]}}`` from the engine's own schedules."""
    import torch

    from cnnlab.config import SchedConfig
    from cnnlab.engine.schedulers import SCHEDULERS, lr_curve

    names = names or [n for n in SETTINGS if n.split("+")[0] in SCHEDULERS.names()]
    curves = {}
    for name in names:
        base = name.split("+")[0]
        settings = {"name": base, **SETTINGS.get(name, {})}
        config = replace(SchedConfig(), **settings)

        def sgd():
            return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)

        curves[name] = {"settings": settings, "lr": lr_curve(sgd, config, EPOCHS, STEPS_PER_EPOCH)}
        curves[name]["config"] = asdict(config)
    return curves


def schedules_example(names: list[str] | None = None, out_dir: str | Path | None = None) -> TeachingResult:
    """One panel per schedule: LR against step, with the epoch boundaries every 10 steps."""
    curves = schedule_curves(names)
    cols = min(4, len(curves))
    rows = -(-len(curves) // cols)
    fig = new_figure(3.4 * cols, 2.6 * rows)
    for i, (name, c) in enumerate(curves.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot(np.arange(len(c["lr"])), c["lr"], lw=1.5)
        ax.set_ylim(0, LR * 1.1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"step ({STEPS_PER_EPOCH} per epoch)", fontsize=7)
        ax.set_ylabel("learning rate", fontsize=7)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    values = {"epochs": EPOCHS, "steps_per_epoch": STEPS_PER_EPOCH, "lr": LR, "curves": curves}
    name = "schedules" if names is None else "schedules_" + "_".join(names)
    return save_result(fig, TeachingResult(name, values), out_dir)


def schedules_text(result: TeachingResult) -> str:
    """The LR at the start of every 5th epoch (and the last step) for each schedule."""
    v = result.values
    per = v["steps_per_epoch"]
    epochs = list(range(0, v["epochs"], 5))
    lines = [f"LR {v['lr']} for {v['epochs']} epochs of {per} steps; LR at the start of epoch:",
             f"{'schedule':<16}" + "".join(f"{e:>9}" for e in epochs) + f"{'last':>9}"]  # fmt: skip
    for name, c in v["curves"].items():
        lrs = c["lr"]
        lines.append(f"{name:<16}" + "".join(f"{lrs[e * per]:>9.3g}" for e in epochs) + f"{lrs[-1]:>9.3g}")
    lines.append("settings: " + "; ".join(f"{n} {s}" for n, s in SETTINGS.items() if n in v["curves"] and s))
    lines.append("plateau here sees a validation loss that never improves, so it halves the LR every 5 epochs")
    return "\n".join(lines)
