"""Weight-initialisation registry (seed 002, "Weight Initialization").

Each scheme re-initialises the weights of every convolution and linear layer; biases start at 0 and
normalisation layers at scale 1, shift 0. With fan_in = inputs per output unit (C_in * kH * kW):

* He / Kaiming (He et al. 2015, for ReLU): normal std sqrt(2 / fan_in), uniform bound sqrt(6 / fan_in);
* Xavier / Glorot (2010, for tanh/sigmoid): normal std sqrt(2 / (fan_in + fan_out)), uniform bound
  sqrt(6 / (fan_in + fan_out));
* LeCun (1998, for SELU): normal std sqrt(1 / fan_in), uniform bound sqrt(3 / fan_in);
* zero: every weight 0. All units of a layer then compute the same thing and receive the same
  gradient, so they stay identical for ever (the symmetry problem) — a teaching example only.

``default`` keeps each model builder's own initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from cnnlab.registry import Registry

INITS: Registry = Registry("weight initialisation")
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def _lecun(w: torch.Tensor, uniform: bool) -> None:
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(w)
    if uniform:
        nn.init.uniform_(w, -math.sqrt(3.0 / fan_in), math.sqrt(3.0 / fan_in))
    else:
        nn.init.normal_(w, 0.0, math.sqrt(1.0 / fan_in))


_SCHEMES: dict[str, Callable[[torch.Tensor], None]] = {
    "he_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "he_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "xavier_normal": nn.init.xavier_normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
    "lecun_normal": lambda w: _lecun(w, uniform=False),
    "lecun_uniform": lambda w: _lecun(w, uniform=True),
    "zero": nn.init.zeros_,
}


def _make(fill: Callable[[torch.Tensor], None]) -> Callable[[nn.Module], nn.Module]:
    @torch.no_grad()
    def apply(model: nn.Module) -> nn.Module:
        for m in model.modules():
            if isinstance(m, _LAYERS):
                fill(m.weight)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, _NORMS) and getattr(m, "weight", None) is not None:
                m.weight.fill_(1.0)
                m.bias.zero_()
        return model

    return apply


for _name, _fill in _SCHEMES.items():
    INITS.register(_name)(_make(_fill))


@INITS.register("default")
def default(model: nn.Module) -> nn.Module:
    """The builder's own initialisation (torch's defaults unless the model sets its own)."""
    return model


def init_weights(model: nn.Module, scheme: str = "default") -> nn.Module:
    """Re-initialise ``model`` in place with a registered scheme and return it."""
    return INITS.get(scheme)(model)
