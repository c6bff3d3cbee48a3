"""Learning-rate range test (Smith 2017; the "LR finder" popularised by fast.ai).

Train for a few hundred steps while the LR grows exponentially from ``start`` to ``end``, record
the loss at each step, smooth it with a bias-corrected exponential moving average, and stop once
the smoothed loss exceeds ``diverge`` times its minimum. The suggested LR is where the loss, averaged
over a centred window (no lag, unlike the running average), falls fastest per unit of log-LR before
its minimum: large enough to learn quickly, still on the stable side. Everything the sweep touches is
restored afterwards: weights, buffers, gradients and train/eval modes of the model, the optimiser, the
global and data random states, and the loader's epoch plan and workers (``preserved()``), so a run
given the suggested rate and a run that found it are the same run.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cnnlab.engine.loop import _split_output
from cnnlab.errors import CnnlabError


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # raw loss per step
    smoothed: list[float]  # bias-corrected EMA of the loss
    suggestion: float
    reason: str


@contextlib.contextmanager
def closed_after(loader: Iterable):
    """``iter(loader)``, closed when the block ends: a generator's ``finally`` runs then, so a loader's
    prefetch thread stops drawing before the sweep restores the random states."""
    batches = iter(loader)
    try:
        yield batches
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def preserved(loader):
    """The loader's own restore (``preserved()``, also offered by views of a loader), or nothing to do."""
    restore = getattr(loader, "preserved", None)
    return restore() if restore is not None else contextlib.nullcontext()


def _cycle(loader: Iterable):
    while True:
        empty = True
        with closed_after(loader) as batches:  # closed when the sweep stops
            for batch in batches:
                empty = False
                yield batch
        if empty:
            raise CnnlabError("the LR finder got no training batches")


def lr_find(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    beta: float = 0.98,
    diverge: float = 4.0,
    generators: list[torch.Generator] | None = None,
    progress: bool = False,
) -> LRFindResult:
    """Sweep the LR of ``optimizer`` exponentially over ``steps`` batches and suggest one (see module doc)."""
    if not 0 < start < end or steps < 5:
        raise CnnlabError(f"lr-find needs 0 < start < end and at least 5 steps (got {start}, {end}, {steps})")
    ratios = [
        g["lr"] / optimizer.param_groups[0]["lr"] if optimizer.param_groups[0]["lr"] else 1.0
        for g in optimizer.param_groups
    ]
    saved = _snapshot(model, optimizer, generators or [])
    bar = _bar(steps, progress)
    batches = _cycle(loader)
    with preserved(loader):
        try:
            lrs, losses, smoothed = _sweep(
                model, batches, optimizer, ratios, loss_fn, (start, end, steps), beta, diverge, bar
            )
        finally:
            batches.close()  # its iterators stop (no prefetch thread left drawing) before anything is restored
            bar.close()
            _restore(model, optimizer, generators or [], saved)
    suggestion, reason = suggest(lrs, centred(losses))
    return LRFindResult(lrs, losses, smoothed, suggestion, reason)


def _sweep(model, batches, optimizer, ratios, loss_fn, sweep: tuple[float, float, int], beta, diverge, bar):
    """The range test proper: one step per batch at an exponentially growing LR until the smoothed loss diverges."""
    start, end, steps = sweep
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    model.train()
    for i, (x, y) in zip(range(steps), batches):
        lr = start * (end / start) ** (i / (steps - 1))
        for g, r in zip(optimizer.param_groups, ratios):
            g["lr"] = lr * r
        loss = loss_fn(_split_output(model(x))[0], y)
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        avg = beta * avg + (1 - beta) * value
        smooth = avg / (1 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(value)
        smoothed.append(smooth)
        best = min(best, smooth)
        bar.update(1)
        bar.set_postfix_str(f"lr {lr:.1e} loss {smooth:.3f}", refresh=False)
        if smooth > diverge * best:
            break
    return lrs, losses, smoothed


def centred(losses: list[float], share: float = 0.1) -> list[float]:
    """The raw losses averaged over a centred window (``share`` of the sweep, at least 3 steps).

    The running EMA that decides when to stop lags the sweep by about 1/(1-beta) steps: on a short
    sweep (40 steps over six decades) that moves its steepest point one to three decades too high,
    into rates that wreck a pretrained network. The finished sweep can afford a window that looks
    both ways, so the suggestion is read from this lag-free curve instead.
    """
    x = np.asarray(losses, dtype=float)
    half = max(1, int(len(x) * share) // 2)
    # ends extended by point reflection (2 x0 - x_k), which keeps the slope there
    padded = np.concatenate([2 * x[0] - x[half:0:-1], x, 2 * x[-1] - x[-2 : -half - 2 : -1]])
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    return np.convolve(padded, kernel, mode="valid").tolist()


def _bar(steps: int, show: bool):
    """A progress bar on stderr (disabled: a no-op with the same methods)."""
    import sys

    from tqdm import tqdm

    return tqdm(total=steps, desc="LR finder", unit="step", disable=not show, file=sys.stderr, leave=False)


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float, str]:
    """The LR of steepest descent of the smoothed loss (per log-LR) before its minimum, and why."""
    if len(lrs) < 5:
        raise CnnlabError("the loss diverged within the first steps; lower --start or check the data")
    lo = np.log10(lrs)
    s = np.asarray(smoothed)
    stop = int(np.argmin(s))  # divergence begins after the minimum
    skip = max(1, len(s) // 10)  # the first steps are dominated by the EMA's warm-up noise
    if stop <= skip + 1:
        stop = len(s) - 1
    slope = np.gradient(s, lo)
    i = skip + int(np.argmin(slope[skip:stop]))
    reason = (
        f"the smoothed loss falls fastest there ({slope[i]:.3g} per decade of LR), before it bottoms out at "
        f"{lrs[stop]:.2e} and diverges; a schedule peaking near this LR (up to ~3x for one-cycle) is a safe start."
    )
    return float(lrs[i]), reason


def _snapshot(model: nn.Module, optimizer, generators) -> dict:
    """Everything the sweep changes outside the loader. The gradients matter: the sweep's last step leaves
    them on the parameters, and a loop that zeroes after its step would add them to its first update."""
    params = list(model.parameters())
    return {
        "model": copy.deepcopy(model.state_dict()),
        "buffers": [b.detach().clone() for b in model.buffers()],  # non-persistent ones are not in state_dict
        "grads": [None if p.grad is None else p.grad.detach().clone() for p in params],
        "modes": [m.training for m in model.modules()],  # per module: a frozen BatchNorm may sit in eval mode
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "gens": [g.get_state() for g in generators],
    }


def _restore(model: nn.Module, optimizer, generators, saved: dict) -> None:
    model.load_state_dict(saved["model"])
    with torch.no_grad():
        for b, value in zip(model.buffers(), saved["buffers"]):
            b.copy_(value)
    for p, grad in zip(model.parameters(), saved["grads"]):
        p.grad = grad
    for m, mode in zip(model.modules(), saved["modes"]):
        m.training = mode
    optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["torch"])
    if saved["cuda"] is not None:
        torch.cuda.set_rng_state_all(saved["cuda"])
    np.random.set_state(saved["numpy"])
    random.setstate(saved["python"])
    for g, st in zip(generators, saved["gens"]):
        g.set_state(st)
