"""Optimisers for the NumPy engine with torch's exact update rules (so one step matches torch).

All of them read ``Parameter.grad`` and update ``Parameter.data`` in place, keeping per-parameter
state (momentum buffers, moment estimates) in lists aligned with the parameter list. Weight decay
is L2 added to the gradient (torch's ``weight_decay``), except in :class:`AdamW` where it is
decoupled (Loshchilov & Hutter 2019). Adam follows Kingma & Ba (2015) with bias correction.
"""

from __future__ import annotations

import math

import numpy as np

from cnnlab.numpy_engine.model import Parameter
from cnnlab.registry import Registry

OPTIMIZERS: Registry = Registry("numpy optimizer")


class Optimizer:
    """Base class: holds the parameters, a mutable ``lr`` (for schedules) and ``zero_grad``."""

    def __init__(self, params, lr: float):
        self.params: list[Parameter] = list(params)
        self.lr = lr
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _grads(self, weight_decay: float):
        """Yield (param, gradient with L2 weight decay added) for parameters that have a gradient."""
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad if not weight_decay else p.grad + weight_decay * p.data
            yield i, p, g

    def step(self) -> None:
        raise NotImplementedError


@OPTIMIZERS.register("sgd")
class SGD(Optimizer):
    """p -= lr * g, with optional momentum (buf = mu*buf + (1-dampening)*g) and Nesterov (g + mu*buf)."""

    def __init__(
        self,
        params,
        lr: float = 0.01,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening")
        self.momentum, self.dampening, self.nesterov, self.weight_decay = momentum, dampening, nesterov, weight_decay
        self.buf: list[np.ndarray | None] = [None] * len(self.params)

    def step(self) -> None:
        self.steps += 1
        for i, p, g in self._grads(self.weight_decay):
            if self.momentum:
                if self.buf[i] is None:  # torch: the first step stores the raw gradient
                    self.buf[i] = np.array(g, copy=True)
                else:
                    self.buf[i] *= self.momentum
                    self.buf[i] += (1 - self.dampening) * g
                g = g + self.momentum * self.buf[i] if self.nesterov else self.buf[i]
            p.data -= self.lr * g


@OPTIMIZERS.register("rmsprop")
class RMSprop(Optimizer):
    """Divide the gradient by a running RMS: sq = a*sq + (1-a)*g^2; p -= lr * g / (sqrt(sq) + eps)."""

    def __init__(
        self,
        params,
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ):
        super().__init__(params, lr)
        self.alpha, self.eps, self.weight_decay = alpha, eps, weight_decay
        self.momentum, self.centered = momentum, centered
        self.sq = [np.zeros_like(p.data) for p in self.params]
        self.avg = [np.zeros_like(p.data) for p in self.params] if centered else None
        self.buf = [np.zeros_like(p.data) for p in self.params] if momentum else None

    def step(self) -> None:
        self.steps += 1
        a = self.alpha
        for i, p, g in self._grads(self.weight_decay):
            sq = self.sq[i]
            sq *= a
            sq += (1 - a) * g * g
            if self.centered:
                self.avg[i] *= a
                self.avg[i] += (1 - a) * g
                denom = np.sqrt(sq - self.avg[i] * self.avg[i]) + self.eps
            else:
                denom = np.sqrt(sq) + self.eps
            if self.momentum:
                self.buf[i] *= self.momentum
                self.buf[i] += g / denom
                p.data -= self.lr * self.buf[i]
            else:
                p.data -= self.lr * (g / denom)


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    """m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)."""

    decoupled = False

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]

    def step(self) -> None:
        self.steps += 1
        b1, b2 = self.betas
        bc1, bc2 = 1 - b1**self.steps, 1 - b2**self.steps
        wd_l2 = 0.0 if self.decoupled else self.weight_decay
        for i, p, g in self._grads(wd_l2):
            if self.decoupled and self.weight_decay:
                p.data *= 1 - self.lr * self.weight_decay
            m, v = self.m[i], self.v[i]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            denom = np.sqrt(v) / math.sqrt(bc2) + self.eps
            p.data -= (self.lr / bc1) * (m / denom)


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr*wd before the Adam step (torch default wd 0.01)."""

    decoupled = True

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ):
        super().__init__(params, lr, betas, eps, weight_decay)
