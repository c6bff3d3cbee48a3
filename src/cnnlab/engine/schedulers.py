"""Learning-rate schedule registry, with a linear warm-up that composes with every schedule.

Every registered builder returns a torch LR scheduler (or None for a constant LR) plus whether it
advances per optimiser step or per epoch. All schedules except reduce-on-plateau run per step, with
epoch-based settings converted to steps, so the LR is smooth and the loop needs no special cases:
``Schedule.step_batch()`` after every optimiser step, ``Schedule.step_epoch(metrics)`` after
validation. Schedules covered (seed 002, "Learning Rate Scheduling"): step, multistep,
exponential, polynomial, cosine, cosine with warm restarts (Loshchilov & Hutter 2017),
reduce-on-plateau (seed 000's choice), cyclic (Smith 2017) and one-cycle (Smith 2018).

Warm-up (Goyal et al. 2017) scales the inner schedule's starting LR from ``warmup_start`` to 1 over
``warmup_epochs``; the inner schedule then starts its own clock. Chainable torch schedulers compute
the next LR from the current one, so the warm-up restores the inner LR before the inner schedule
ever steps again; otherwise the warm-up factor would leak into every later LR.

Parameter groups marked ``train_epochs`` (``optim.group_epochs``) follow their own clock instead:
their LR falls linearly from its starting value to 0 over that many epochs, whatever the schedule
and warm-up do to the rest, and their parameters are then frozen (``requires_grad`` off), so the
backward pass stops computing gradients nobody uses. airbench94 trains its whitening layer's bias
this way for the first 3 of its 8 epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import lr_scheduler as L

from cnnlab.config import SchedConfig
from cnnlab.errors import CnnlabError
from cnnlab.registry import Registry

SCHEDULERS: Registry = Registry("scheduler")


@dataclass
class Plan:
    """What a builder sees: total steps of the inner schedule and steps per epoch."""

    total: int
    per_epoch: int


class Schedule:
    """A torch scheduler (or none) behind one interface, with an optional linear warm-up in front."""

    def __init__(self, opt, scheduler=None, per_batch=True, monitor=None, warmup_steps=0, warmup_start=0.0, limited=()):
        self.opt, self.scheduler, self.per_batch, self.monitor = opt, scheduler, per_batch, monitor
        self.warmup_steps, self.warmup_start = int(warmup_steps), float(warmup_start)
        self.steps = 0  # optimiser steps taken
        self.inner_lrs = [g["lr"] for g in opt.param_groups]  # the LR the inner schedule wants now
        # (group index, starting LR, steps) of the groups that train for a limited number of epochs;
        # indices, not the group dicts, which an optimiser's load_state_dict replaces
        self.limited = list(limited)
        if self.warmup_steps > 0:
            self._set_warm_lrs()
        self._apply_limits()

    def _apply_limits(self) -> None:
        """Set the LR of every time-limited group from the step count; freeze it once its time is up."""
        for i, start, steps in self.limited:
            g = self.opt.param_groups[i]
            g["lr"] = start * max(0.0, 1.0 - self.steps / steps)
            if self.steps >= steps:
                for p in g["params"]:
                    p.requires_grad_(False)

    def _set_warm_lrs(self) -> None:
        frac = self.warmup_start + (1 - self.warmup_start) * (self.steps + 1) / self.warmup_steps
        for g, lr in zip(self.opt.param_groups, self.inner_lrs):
            g["lr"] = lr * frac

    @property
    def warming_up(self) -> bool:
        return self.steps < self.warmup_steps

    def step_batch(self) -> None:
        self.steps += 1
        self._step_inner()
        self._apply_limits()

    def _step_inner(self) -> None:
        if self.steps < self.warmup_steps:
            self._set_warm_lrs()
            return
        if self.steps == self.warmup_steps:  # warm-up over: hand the inner schedule its own LR back
            for g, lr in zip(self.opt.param_groups, self.inner_lrs):
                g["lr"] = lr
            return
        if self.scheduler is not None and self.per_batch:
            self.scheduler.step()

    def step_epoch(self, metrics: dict[str, float]) -> None:
        if self.scheduler is None or self.per_batch or self.warming_up:
            return
        if self.monitor:
            if self.monitor not in metrics:
                raise CnnlabError(f"sched.monitor {self.monitor!r} is not a metric; use one of {sorted(metrics)}")
            self.scheduler.step(metrics[self.monitor])
        else:
            self.scheduler.step()
        self._apply_limits()

    def state_dict(self) -> dict:
        return {
            "steps": self.steps,
            "inner_lrs": list(self.inner_lrs),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
        }

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.steps, self.inner_lrs = int(state["steps"]), list(state["inner_lrs"])
        if self.scheduler is not None and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        self._apply_limits()


@SCHEDULERS.register("none")
def constant(opt, c: SchedConfig, p: Plan):
    """Constant learning rate."""
    return None, True


@SCHEDULERS.register("plateau")
def plateau(opt, c: SchedConfig, p: Plan):
    """Multiply the LR by ``factor`` when ``monitor`` has not improved for ``patience`` epochs (seed 000)."""
    mode = "min" if c.monitor.endswith("loss") else "max"
    return L.ReduceLROnPlateau(opt, mode=mode, factor=c.factor, patience=c.patience, min_lr=c.min_lr), False


@SCHEDULERS.register("step")
def step(opt, c: SchedConfig, p: Plan):
    """Multiply the LR by ``gamma`` every ``step_size`` epochs."""
    return L.StepLR(opt, step_size=max(1, c.step_size * p.per_epoch), gamma=c.gamma), True


@SCHEDULERS.register("multistep")
def multistep(opt, c: SchedConfig, p: Plan):
    """Multiply the LR by ``gamma`` at each epoch in ``milestones``."""
    return L.MultiStepLR(opt, milestones=[m * p.per_epoch for m in c.milestones], gamma=c.gamma), True


@SCHEDULERS.register("exponential")
def exponential(opt, c: SchedConfig, p: Plan):
    """Multiply the LR by ``gamma`` per epoch, spread evenly over its steps (gamma ** (1 / steps))."""
    return L.ExponentialLR(opt, gamma=c.gamma ** (1.0 / max(1, p.per_epoch))), True


@SCHEDULERS.register("polynomial")
def polynomial(opt, c: SchedConfig, p: Plan):
    """LR * (1 - t/T) ** power over the run (power 1: linear decay to 0)."""
    return L.PolynomialLR(opt, total_iters=p.total, power=c.power), True


@SCHEDULERS.register("cosine")
def cosine(opt, c: SchedConfig, p: Plan):
    """Half a cosine from the LR down to ``min_lr`` over the run."""
    return L.CosineAnnealingLR(opt, T_max=p.total, eta_min=c.min_lr), True


@SCHEDULERS.register("cosine_restarts")
def cosine_restarts(opt, c: SchedConfig, p: Plan):
    """SGDR: cosine cycles of ``restart_epochs`` (each ``restart_mult`` times longer), restarting at the LR."""
    t0 = max(1, c.restart_epochs * p.per_epoch)
    return L.CosineAnnealingWarmRestarts(opt, T_0=t0, T_mult=c.restart_mult, eta_min=c.min_lr), True


def _has_momentum(opt) -> bool:
    return any(k in opt.defaults for k in ("momentum", "betas")) and opt.defaults.get("momentum", 1) != 0


@SCHEDULERS.register("cyclic")
def cyclic(opt, c: SchedConfig, p: Plan):
    """Triangular cycles between ``base_lr`` and the LR, ``cycle_epochs`` per half cycle."""
    up = max(1, int(c.cycle_epochs * p.per_epoch))
    max_lr = [g["lr"] for g in opt.param_groups]
    return L.CyclicLR(
        opt, base_lr=c.base_lr, max_lr=max_lr, step_size_up=up, mode=c.cycle_mode, cycle_momentum=False
    ), True


@SCHEDULERS.register("onecycle")
def onecycle(opt, c: SchedConfig, p: Plan):
    """One-cycle: rise from LR/div_factor to the LR for ``pct_start`` of the run, then anneal far below.

    With ``restarts`` (epochs), a new cycle begins at each of them, peaking at ``restart_peak`` times
    the one before: the fine-tune recipe's head cycle, then a cycle for the whole network.
    """
    if c.restarts:
        return L.LambdaLR(opt, _cycles(c, p)), True
    s = L.OneCycleLR(
        opt,
        max_lr=[g["lr"] for g in opt.param_groups],
        total_steps=p.total,
        pct_start=c.pct_start,
        div_factor=c.div_factor,
        final_div_factor=c.final_div_factor,
        cycle_momentum=_has_momentum(opt),
    )
    return s, True


def _cycles(c: SchedConfig, p: Plan):
    """LR factor at step t for one-cycles restarting at ``c.restarts`` (torch's cosine one-cycle shape)."""
    starts = sorted({0, *(e * p.per_epoch for e in c.restarts if 0 < e * p.per_epoch < p.total)})
    ends = [*starts[1:], p.total]
    low, final = 1 / c.div_factor, 1 / (c.div_factor * c.final_div_factor)

    def factor(t: int) -> float:
        k = max(i for i, s in enumerate(starts) if s <= t)
        t, n = t - starts[k], ends[k] - starts[k]
        up = max(1.0, c.pct_start * n)
        shape = _cos(low, 1.0, t / up) if t < up else _cos(1.0, final, min(1.0, (t - up) / max(1.0, n - up)))
        return c.restart_peak**k * shape

    return factor


def _cos(start: float, end: float, frac: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * frac)) / 2


def build_schedule(opt, c: SchedConfig, epochs: int, steps_per_epoch: int) -> Schedule:
    """The schedule ``c.name`` over ``epochs`` of ``steps_per_epoch`` optimiser steps, after any warm-up."""
    per_epoch = max(1, steps_per_epoch)
    warm = int(math.ceil(c.warmup_epochs * per_epoch))
    total = max(1, epochs * per_epoch - warm)
    # Starting LRs read before any scheduler is built: OneCycle and friends rewrite them.
    limited = [
        (i, g["lr"], max(1, round(g["train_epochs"] * per_epoch)))
        for i, g in enumerate(opt.param_groups)
        if g.get("train_epochs")
    ]
    # OneCycle and friends write into param_groups; build on the inner optimiser for Lookahead.
    scheduler, per_batch = SCHEDULERS.get(c.name)(_inner(opt), c, Plan(total, per_epoch))
    monitor = c.monitor if c.name == "plateau" else None
    return Schedule(opt, scheduler, per_batch, monitor, warm, c.warmup_start, limited)


def _inner(opt):
    return getattr(opt, "inner", opt)


def lr_curve(opt_factory, c: SchedConfig, epochs: int, steps_per_epoch: int) -> list[float]:
    """The LR of every step of a schedule (for plots and tests), from a fresh optimiser."""
    opt = opt_factory()
    s = build_schedule(opt, c, epochs, steps_per_epoch)
    lrs = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            s.step_batch()
        s.step_epoch({c.monitor: 1.0})
    return lrs
