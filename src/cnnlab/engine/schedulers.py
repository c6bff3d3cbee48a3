"""Learning-rate schedule registry.

A schedule object has ``step_batch()`` (called after every optimiser step) and ``step_epoch(metrics)``
(after validation), so per-step schedules (one-cycle, warm-up) and per-epoch ones (plateau) share
one interface and the loop needs no special cases.
"""

from __future__ import annotations

import math

import torch

from cnnlab.config import SchedConfig
from cnnlab.registry import Registry

SCHEDULERS: Registry = Registry("scheduler")


class Schedule:
    """Wraps a torch LR scheduler; ``per_batch`` says when it advances."""

    def __init__(self, scheduler=None, per_batch: bool = False, monitor: str | None = None):
        self.scheduler, self.per_batch, self.monitor = scheduler, per_batch, monitor

    def step_batch(self) -> None:
        if self.scheduler is not None and self.per_batch:
            self.scheduler.step()

    def step_epoch(self, metrics: dict[str, float]) -> None:
        if self.scheduler is None or self.per_batch:
            return
        if self.monitor:
            self.scheduler.step(metrics[self.monitor])
        else:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None and state:
            self.scheduler.load_state_dict(state)


@SCHEDULERS.register("none")
def constant(opt, c: SchedConfig, epochs: int, steps_per_epoch: int) -> Schedule:
    """Constant learning rate."""
    return Schedule()


@SCHEDULERS.register("plateau")
def plateau(opt, c: SchedConfig, epochs: int, steps_per_epoch: int) -> Schedule:
    """Multiply the LR by ``factor`` when ``monitor`` has not improved for ``patience`` epochs (seed 000)."""
    mode = "min" if c.monitor.endswith("loss") else "max"
    s = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=mode, factor=c.factor, patience=c.patience, min_lr=c.min_lr
    )
    return Schedule(s, monitor=c.monitor)


@SCHEDULERS.register("step")
def step(opt, c: SchedConfig, epochs: int, steps_per_epoch: int) -> Schedule:
    """Multiply the LR by ``gamma`` every ``step_size`` epochs."""
    return Schedule(torch.optim.lr_scheduler.StepLR(opt, step_size=c.step_size, gamma=c.gamma))


@SCHEDULERS.register("cosine")
def cosine(opt, c: SchedConfig, epochs: int, steps_per_epoch: int) -> Schedule:
    """Cosine decay to ``min_lr`` over the whole run, per step, after an optional linear warm-up."""
    total = max(1, epochs * steps_per_epoch)
    warm = int(c.warmup_epochs * steps_per_epoch)
    base = [g["lr"] for g in opt.param_groups]

    def factor(i: int, b: float) -> float:
        if i < warm:
            return (i + 1) / warm
        t = (i - warm) / max(1, total - warm)
        floor = c.min_lr / b
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    lambdas = [lambda i, b=b: factor(i, b) for b in base]
    return Schedule(torch.optim.lr_scheduler.LambdaLR(opt, lambdas), per_batch=True)


@SCHEDULERS.register("onecycle")
def onecycle(opt, c: SchedConfig, epochs: int, steps_per_epoch: int) -> Schedule:
    """One-cycle (Smith 2018): warm up to the configured LR, then anneal, per step."""
    max_lr = [g["lr"] for g in opt.param_groups]
    s = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=max_lr, total_steps=max(1, epochs * steps_per_epoch), pct_start=0.25
    )
    return Schedule(s, per_batch=True)


def build_schedule(opt, c: SchedConfig, epochs: int, steps_per_epoch: int) -> Schedule:
    return SCHEDULERS.get(c.name)(opt, c, epochs, steps_per_epoch)
