"""Optimiser registry. Each entry builds a torch optimiser from ``OptimConfig`` and parameters.

Weight decay in SGD/Adam/RMSprop is the classic L2 term added to the gradient; AdamW decouples it
(Loshchilov & Hutter 2019). Seed 000's recipe is Adam with lr 1e-3 and weight decay 1e-4.
"""

from __future__ import annotations

import torch

from cnnlab.config import OptimConfig
from cnnlab.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def sgd(params, c: OptimConfig) -> torch.optim.Optimizer:
    """SGD with (Nesterov) momentum; momentum 0 gives plain SGD."""
    return torch.optim.SGD(
        params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov and c.momentum > 0, weight_decay=c.weight_decay
    )


@OPTIMIZERS.register("adam")
def adam(params, c: OptimConfig) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba 2015) with L2 weight decay."""
    return torch.optim.Adam(params, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=c.weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(params, c: OptimConfig) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay."""
    return torch.optim.AdamW(params, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=c.weight_decay)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params, c: OptimConfig) -> torch.optim.Optimizer:
    """RMSprop (Hinton 2012) with optional momentum."""
    return torch.optim.RMSprop(params, lr=c.lr, momentum=c.momentum, eps=c.eps, weight_decay=c.weight_decay)


def build_optimizer(params, c: OptimConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(c.name)(params, c)
