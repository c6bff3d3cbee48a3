"""Frozen BatchNorm folded into the convolution before it, for training as well as inference.

A batch-norm layer in eval mode is an affine map per channel: ``y = x * s + t`` with
``s = gamma / sqrt(running_var + eps)`` and ``t = beta - running_mean * s``. After a convolution
with weight ``W`` (and bias ``c``) that is the same convolution with weight ``W * s`` and bias
``c * s + t``. The fine-tune recipe keeps the pretrained statistics (``model.bn_stats: pretrained``),
so every batch-norm layer of the network runs in eval mode for the whole run while its scale and
shift still train; folded, the product ``W * s`` is recomputed at each forward from the live
parameters, so ``W``, ``gamma`` and ``beta`` get the same gradients, and the state dict, the
checkpoints and the model file do not change. What goes away is the batch-norm pass over every
activation, forward and backward (EfficientNet-Lite0 at 96 px, one thread, two runs of
``benchmarks/finetune_parts.py``: 18.8-19.2 against 17.5-18.0 ms a training image at batch 16,
16.5-18.3 against 14.2-14.7 at batch 32, 3.7 against 2.5-2.7 ms a scored image in batches of 64).

The pairs come from a ``torch.fx`` trace: a ``Conv2d`` whose output feeds exactly one batch-norm
layer and nothing else. A network that cannot be traced is left as it is. Each folded layer checks
``bn.training`` at every call, so a layer that trains its statistics (``bn_stats: update``, a block
unfrozen by a progressive schedule) runs the ordinary convolution and batch norm.
"""

from __future__ import annotations

import types

import torch
from torch import fx, nn


def _identity(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x


def _drop_act(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return bn.act(bn.drop(x))  # timm's BatchNormAct2d: batch norm, then dropout and the activation


# batch-norm classes that can be folded: what their forward does after the normalisation itself
AFTER_NORM = {nn.BatchNorm2d: _identity}


def _after_norm(bn: nn.Module):
    after = AFTER_NORM.get(type(bn))
    if after is None and type(bn).__name__ == "BatchNormAct2d" and type(bn).__module__.startswith("timm."):
        after = _drop_act
    return after


class _Tracer(fx.Tracer):
    """Batch-norm layers stay whole in the graph (timm's BatchNormAct2d would be traced into otherwise)."""

    def is_leaf_module(self, m: nn.Module, name: str) -> bool:
        return isinstance(m, nn.modules.batchnorm._BatchNorm) or super().is_leaf_module(m, name)


def conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.Module]]:
    """(convolution, batch norm) pairs of ``model`` that can be folded; [] when it cannot be traced."""
    try:
        graph = _Tracer().trace(model)
    except Exception:  # noqa: BLE001 - data-dependent control flow and the like: no folding, no harm
        return []
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if bn is None or _after_norm(bn) is None or bn.running_var is None or len(node.args) != 1:
            continue
        src = node.args[0]
        conv = modules.get(src.target) if isinstance(src, fx.Node) and src.op == "call_module" else None
        if type(conv) is nn.Conv2d and len(src.users) == 1 and conv.out_channels == bn.num_features:
            pairs.append((conv, bn))
    return pairs


def fold_batchnorm(model: nn.Module) -> int:
    """Fold each eval-mode batch-norm layer of ``model`` into its convolution (see the module
    docstring); returns how many pairs were folded. Parameters and buffers are untouched."""
    pairs = [(c, b) for c, b in conv_bn_pairs(model) if "_cnnlab_folded_bn" not in c.__dict__]
    for conv, bn in pairs:
        object.__setattr__(conv, "_cnnlab_folded_bn", bn)  # not a submodule: the state dict stays as it is
        object.__setattr__(bn, "_cnnlab_after_norm", _after_norm(bn))
        # bound methods: copy.deepcopy (EMA copies) rebinds them to the copied layers
        conv.forward = types.MethodType(_folded_conv_forward, conv)
        bn.forward = types.MethodType(_folded_bn_forward, bn)
    return len(pairs)


def _folded_conv_forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    bn = self.__dict__["_cnnlab_folded_bn"]
    if bn.training:  # batch statistics: the ordinary convolution, then the batch norm's own forward
        return nn.Conv2d.forward(self, x)
    scale = _inv_std(bn)
    if bn.weight is not None:
        scale = bn.weight * scale
    shift = torch.addcmul(bn.bias if bn.bias is not None else torch.zeros_like(scale), bn.running_mean, scale, value=-1)
    if self.bias is not None:
        shift = torch.addcmul(shift, self.bias, scale)
    return self._conv_forward(x, self.weight * scale.view(-1, 1, 1, 1), shift)


def _inv_std(bn: nn.Module) -> torch.Tensor:
    """``1 / sqrt(running_var + eps)``, kept while the statistics stay as they are (in eval mode they do):
    two of the few small operations each folded call adds."""
    var = bn.running_var
    key = (var.data_ptr(), var._version, var.dtype)
    cached = bn.__dict__.get("_cnnlab_inv_std")
    if cached is None or cached[0] != key:
        with torch.inference_mode(False), torch.no_grad():  # a normal tensor: training saves it for backward
            cached = (key, torch.rsqrt(var + bn.eps))
        object.__setattr__(bn, "_cnnlab_inv_std", cached)
    return cached[1]


def _folded_bn_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if self.training:
        return type(self).forward(self, x)
    return self.__dict__["_cnnlab_after_norm"](self, x)
