"""Optimiser paths on 2-D test functions: GD, SGD, momentum, Nesterov, RMSProp and Adam.

The update rules are written out in NumPy, with the same conventions as ``torch.optim`` so a test
can check them step by step against torch (Kingma & Ba 2015 for Adam; Sutskever et al. 2013 for
Nesterov; Tieleman & Hinton 2012 for RMSProp):

* GD / SGD: ``w <- w - lr g`` (SGD adds seeded Gaussian noise to ``g`` to mimic mini-batches),
* momentum: ``v <- mu v + (1 - dampening) g``, ``w <- w - lr v`` (the moving-average form
  ``v = beta v + (1 - beta) g`` is ``dampening = beta``),
* Nesterov: as momentum, but the step uses ``g + mu v`` (the gradient "looked ahead"),
* RMSProp: ``s <- a s + (1 - a) g^2``, ``w <- w - lr g / (sqrt(s) + eps)``,
* Adam: ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``, bias-corrected
  ``m^ = m / (1 - b1^t)``, ``v^ = v / (1 - b2^t)``, ``w <- w - lr m^ / (sqrt(v^) + eps)``.

The surfaces are an ill-conditioned convex quadratic, the saddle ``x^2 - y^2``, Himmelblau's
function (four minima) and a sum of Gaussian wells (one global and two local minima), drawn as
contour plots with every optimiser's path on top.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.registry import Registry
from cnnlab.teach.base import TeachingResult, new_figure, save_result

Array = np.ndarray


# --- update rules ------------------------------------------------------------------------------
class GD:
    """Plain (full-batch) gradient descent."""

    def __init__(self, lr: float):
        self.lr = lr

    def step(self, w: Array, g: Array) -> Array:
        return w - self.lr * g


class SGD(GD):
    """Gradient descent on a noisy gradient: ``g + N(0, noise^2)`` drawn from a seeded generator."""

    def __init__(self, lr: float, noise: float = 1.0, seed: int = 0):
        super().__init__(lr)
        self.noise, self.rng = noise, np.random.default_rng(seed)

    def step(self, w: Array, g: Array) -> Array:
        return w - self.lr * (g + self.noise * self.rng.standard_normal(g.shape))


class Momentum:
    """Heavy-ball momentum in torch's form (``dampening=momentum`` gives the moving-average form)."""

    nesterov = False

    def __init__(self, lr: float, momentum: float = 0.9, dampening: float = 0.0):
        self.lr, self.mu, self.dampening = lr, momentum, dampening
        self.v: Array | None = None

    def step(self, w: Array, g: Array) -> Array:
        # torch starts the buffer at the first gradient itself (no dampening on step 1)
        self.v = g.copy() if self.v is None else self.mu * self.v + (1 - self.dampening) * g
        direction = g + self.mu * self.v if self.nesterov else self.v
        return w - self.lr * direction


class Nesterov(Momentum):
    """Nesterov momentum: the step uses the gradient plus the momentum-predicted next velocity."""

    nesterov = True


class RMSProp:
    """Divide the step by a running root-mean-square of past gradients (per coordinate)."""

    def __init__(self, lr: float, alpha: float = 0.99, eps: float = 1e-8):
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.s: Array | None = None

    def step(self, w: Array, g: Array) -> Array:
        self.s = (1 - self.alpha) * g**2 if self.s is None else self.alpha * self.s + (1 - self.alpha) * g**2
        return w - self.lr * g / (np.sqrt(self.s) + self.eps)


class Adam:
    """Momentum on the gradient and RMSProp scaling, both bias-corrected for their zero start."""

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = self.v = None
        self.t = 0

    def step(self, w: Array, g: Array) -> Array:
        self.t += 1
        self.m = (1 - self.b1) * g if self.m is None else self.b1 * self.m + (1 - self.b1) * g
        self.v = (1 - self.b2) * g**2 if self.v is None else self.b2 * self.v + (1 - self.b2) * g**2
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        return w - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


OPTIMIZERS: Registry = Registry("teaching optimiser")
# name -> factory(surface, seed); learning rates come from the surface (its scale decides them)
OPTIMIZERS.register("gd")(lambda s, seed=0: GD(s.lr))
OPTIMIZERS.register("sgd")(lambda s, seed=0: SGD(s.lr, noise=s.noise, seed=seed))
OPTIMIZERS.register("momentum")(lambda s, seed=0: Momentum(s.lr * s.momentum_lr_scale, 0.9))
OPTIMIZERS.register("nesterov")(lambda s, seed=0: Nesterov(s.lr * s.momentum_lr_scale, 0.9))
OPTIMIZERS.register("rmsprop")(lambda s, seed=0: RMSProp(s.adaptive_lr, alpha=0.9))
OPTIMIZERS.register("adam")(lambda s, seed=0: Adam(s.adaptive_lr))
OPTIMIZER_ORDER = ["gd", "sgd", "momentum", "nesterov", "rmsprop", "adam"]


# --- surfaces ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Surface:
    """A 2-D function with its gradient, a start point, a plotting box and step sizes."""

    name: str
    title: str
    f: Callable[[Array, Array], Array]  # works on scalars and meshgrids
    grad: Callable[[Array], Array]  # (2,) -> (2,)
    start: tuple[float, float]
    box: tuple[float, float, float, float]  # xmin, xmax, ymin, ymax
    lr: float
    adaptive_lr: float
    steps: int = 80
    noise: float = 1.0
    momentum_lr_scale: float = 0.2  # momentum multiplies the effective step by ~1/(1-mu)
    minima: list[tuple[float, float]] = field(default_factory=list)
    log_levels: bool = False

    def value(self, w: Array) -> float:
        return float(self.f(w[0], w[1]))


SURFACES: Registry = Registry("test function")


@SURFACES.register("quadratic")
def _quadratic() -> Surface:
    # f = (x^2 + 10 y^2) / 2: curvature 1 along x, 10 along y (condition number 10)
    return Surface(
        "quadratic", "convex quadratic (x² + 10y²)/2", lambda x, y: 0.5 * (x**2 + 10 * y**2),
        lambda w: np.array([w[0], 10 * w[1]]), start=(-4.5, 1.5), box=(-5, 5, -2.5, 2.5),
        lr=0.18, adaptive_lr=0.3, steps=60, noise=2.0, minima=[(0.0, 0.0)],
    )  # fmt: skip


@SURFACES.register("saddle")
def _saddle() -> Surface:
    # the origin is a stationary point that is a minimum along x and a maximum along y
    return Surface(
        "saddle", "saddle x² − y²", lambda x, y: x**2 - y**2, lambda w: np.array([2 * w[0], -2 * w[1]]),
        start=(-2.0, 0.01), box=(-2.5, 2.5, -2.5, 2.5), lr=0.05, adaptive_lr=0.1, steps=80, noise=1.0,
    )  # fmt: skip


def _himmelblau_grad(w: Array) -> Array:
    x, y = w
    a, b = x**2 + y - 11, x + y**2 - 7
    return np.array([4 * x * a + 2 * b, 2 * a + 4 * y * b])


@SURFACES.register("himmelblau")
def _himmelblau() -> Surface:
    # (x^2 + y - 11)^2 + (x + y^2 - 7)^2: four minima with f = 0; which one you reach depends on the path
    return Surface(
        "himmelblau", "Himmelblau (four minima)", lambda x, y: (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2,
        _himmelblau_grad, start=(-0.3, -0.9), box=(-5, 5, -5, 5), lr=0.01, adaptive_lr=0.3, steps=100,
        noise=20.0, minima=[(3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)],
        log_levels=True,
    )  # fmt: skip


# Gaussian wells: (centre x, centre y, depth, width); the deepest is the global minimum
_WELLS = [(2.0, -1.0, 2.0, 1.0), (-1.5, 1.5, 1.2, 0.8), (-2.0, -2.0, 0.8, 0.6)]


def _wells_f(x: Array, y: Array) -> Array:
    total = 0.02 * (x**2 + y**2)  # a gentle bowl keeps every path in the box
    for cx, cy, depth, width in _WELLS:
        total = total - depth * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * width**2))
    return total


def _wells_grad(w: Array) -> Array:
    x, y = w
    g = 0.04 * np.array([x, y])
    for cx, cy, depth, width in _WELLS:
        e = depth * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * width**2)) / width**2
        g = g + e * np.array([x - cx, y - cy])
    return g


@SURFACES.register("wells")
def _wells() -> Surface:
    return Surface(
        "wells", "Gaussian wells (local vs global minimum)", _wells_f, _wells_grad, start=(-0.2, 0.2),
        box=(-4, 4, -4, 4), lr=0.3, adaptive_lr=0.1, steps=120, noise=0.6, momentum_lr_scale=0.5,
        minima=[(cx, cy) for cx, cy, _, _ in _WELLS],
    )  # fmt: skip


SURFACE_ORDER = ["quadratic", "saddle", "himmelblau", "wells"]


# --- running and drawing ---------------------------------------------------------------------
def run_path(surface: Surface, optimizer: str, steps: int | None = None, seed: int = 0) -> Array:
    """Points visited by ``optimizer`` from the surface's start: (n_points, 2). Stops early when the
    path leaves twice the plotting box (e.g. sliding off the saddle) or stops being finite."""
    opt = OPTIMIZERS.get(optimizer)(surface, seed=seed)
    w = np.array(surface.start, dtype=float)
    xmin, xmax, ymin, ymax = surface.box
    half_w, half_h = (xmax - xmin), (ymax - ymin)
    path = [w]
    for _ in range(steps or surface.steps):
        w = opt.step(w, surface.grad(w))
        path.append(w)
        outside = not (
            xmin - half_w / 2 <= w[0] <= xmax + half_w / 2 and ymin - half_h / 2 <= w[1] <= ymax + half_h / 2
        )
        if outside or not np.all(np.isfinite(w)):
            break
    return np.array(path)


def _nearest_minimum(surface: Surface, w: Array) -> tuple[int, float] | tuple[None, None]:
    if not surface.minima:
        return None, None
    d = [float(np.hypot(w[0] - mx, w[1] - my)) for mx, my in surface.minima]
    i = int(np.argmin(d))
    return i, d[i]


def path_summary(surface: Surface, path: Array) -> dict[str, Any]:
    """Numbers that describe one path: where it ended, the loss there, and which minimum is nearest."""
    end = path[-1]
    idx, dist = _nearest_minimum(surface, end)
    xmin, xmax, ymin, ymax = surface.box
    return {
        "start": path[0],
        "end": end,
        "steps": len(path) - 1,
        "start_loss": surface.value(path[0]),
        "final_loss": surface.value(end),
        "left_box": bool(not (xmin <= end[0] <= xmax and ymin <= end[1] <= ymax)),
        "nearest_minimum": idx,
        "distance_to_minimum": dist,
    }


def optimizer_lr(surface: Surface, name: str) -> float:
    """The learning rate ``name`` runs with on ``surface`` (the figure's legend shows it)."""
    return float(OPTIMIZERS.get(name)(surface).lr)


def _draw_surface(ax, surface: Surface, paths: dict[str, Array]) -> None:
    xmin, xmax, ymin, ymax = surface.box
    xs, ys = np.meshgrid(np.linspace(xmin, xmax, 120), np.linspace(ymin, ymax, 120))
    zs = surface.f(xs, ys)
    # Himmelblau spans 0..900: log-spaced levels show its basins
    levels = np.geomspace(0.5, zs.max(), 25) if surface.log_levels else np.linspace(zs.min(), zs.max(), 25)
    contours = ax.contour(xs, ys, zs, levels=levels, cmap="Greys", linewidths=0.6)
    ax.clabel(contours, levels=contours.levels[::4], fontsize=6, fmt="%.3g")  # the loss on every 4th contour
    colors = dict(zip(OPTIMIZER_ORDER, ["k", "tab:gray", "tab:blue", "tab:purple", "tab:orange", "tab:red"]))
    for name, p in paths.items():
        label = f"{name} (lr {optimizer_lr(surface, name):g})"
        ax.plot(p[:, 0], p[:, 1], "-o", ms=2, lw=1.2, color=colors.get(name), label=label)
    ax.plot(*surface.start, "g*", ms=12, label="start")
    for i, (mx, my) in enumerate(surface.minima):
        ax.plot(mx, my, "x", color="green", ms=8, label="minimum" if i == 0 else None)
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_title(f"{surface.title}: {surface.steps} steps, contours labelled with the loss", fontsize=8)
    ax.legend(fontsize=6, loc="lower right", framealpha=0.8)


def optimizer_paths(
    functions: list[str] | None = None,
    optimizers: list[str] | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
) -> TeachingResult:
    """Run every optimiser on every surface and draw one contour panel per surface."""
    functions = functions or SURFACE_ORDER
    optimizers = optimizers or OPTIMIZER_ORDER
    cols = min(2, len(functions))
    rows = -(-len(functions) // cols)
    fig = new_figure(5.5 * cols, 5.0 * rows)
    values: dict[str, Any] = {"seed": seed, "functions": {}}
    for i, fname in enumerate(functions):
        surface = SURFACES.create(fname)
        paths = {name: run_path(surface, name, seed=seed) for name in optimizers}
        values["functions"][fname] = {
            "title": surface.title,
            "start": surface.start,
            "minima": surface.minima,
            "lr": surface.lr,
            "adaptive_lr": surface.adaptive_lr,
            "lrs": {name: optimizer_lr(surface, name) for name in optimizers},
            "paths": {name: path_summary(surface, p) for name, p in paths.items()},
        }
        ax = fig.add_subplot(rows, cols, i + 1)
        _draw_surface(ax, surface, paths)
    fig.suptitle("optimiser paths (green star = start, green x = minima; legend: each optimiser's learning rate)")
    name = "optimizers" if len(functions) > 1 else f"optimizers_{functions[0]}"
    return save_result(fig, TeachingResult(name, values), out_dir)


def optimizer_paths_text(result: TeachingResult) -> str:
    """One line per (surface, optimiser): steps taken, where it ended, the loss there."""
    lines = []
    for info in result.values["functions"].values():
        lines.append(f"{info['title']}  start {tuple(info['start'])}")
        for name, s in info["paths"].items():
            where = "left the box" if s["left_box"] else f"nearest minimum #{s['nearest_minimum']}"
            if s["nearest_minimum"] is None and not s["left_box"]:
                where = "inside the box"
            end = f"({s['end'][0]:+.3f}, {s['end'][1]:+.3f})"
            lines.append(
                f"  {name:<9} lr {info['lrs'][name]:<6g}{s['steps']:>4} steps  end {end}  "
                f"loss {s['start_loss']:.3g} -> {s['final_loss']:.3g}  {where}"
            )
    return "\n".join(lines)
