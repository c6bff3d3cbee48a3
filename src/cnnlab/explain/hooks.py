"""Record every layer of one forward pass, and recompute any single unit's value by hand.

:func:`record` puts a forward pre-hook and a forward hook on every leaf module, so it works for
any ``nn.Module`` (a module called twice, like a ResNet block's ReLU, gives two records). Inputs
are cloned *before* the call, because ``ReLU(inplace=True)`` overwrites the tensor it receives.
Each record also carries the receptive-field geometry of its output units on the input image:
``rf`` and ``jump`` by the rule of :func:`cnnlab.arithmetic.receptive_field_step` (as in
:mod:`cnnlab.models.summary`), plus ``start``, the input coordinate of the centre of unit 0
(``start' = start + ((k_eff - 1) / 2 - pad) * jump``; Araujo et al., Distill 2019), so that a
unit's window can be outlined. Tensors made between modules (``x + shortcut``) take the largest
geometry seen on a map of the same size, and are flagged ``rf_exact=False``; ``source`` names the
record whose output a layer read (``None`` for such tensors), so the page can slide a kernel over
the right map.

:func:`unit_arithmetic` then recomputes one unit from the recorded input of its layer in float64:
a conv's patch times its kernel, summed, plus bias; BatchNorm's ``(x - mean) / sqrt(var + eps) *
gamma + beta``; which input won a max pool; an average pool's mean; a linear unit's dot product;
an activation's formula. The recomputed number and the recorded one are both returned, so a
reader (and the tests) can see they agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.arithmetic import receptive_field_step
from cnnlab.errors import CnnlabError


@dataclass
class LayerRecord:
    """One call of a leaf module on one image; ``x`` and ``y`` have no batch dimension."""

    name: str
    type: str
    module: nn.Module
    x: torch.Tensor  # input as the module received it, e.g. (C, H, W) or (F,)
    y: torch.Tensor  # output, e.g. (C', H', W') or (F',)
    params: int  # learnable parameters of the module (0 on its second call)
    rf: int  # receptive field of one output unit, in input pixels
    jump: int  # input pixels between neighbouring output units
    start: float  # input coordinate of the centre of output unit 0 (may be negative: padding)
    rf_exact: bool = True
    flat: bool = False  # output has no spatial layout: every unit sees the whole image
    source: int | None = 0  # 1 + index of the record whose output is x (0: the model input; None: made between modules)

    def box(self, i: int, j: int, size: int) -> tuple[int, int, int, int]:
        """(y0, x0, y1, x1), inclusive and clipped to the image, of output unit (i, j)'s receptive field."""
        if self.flat or self.y.dim() != 3:
            return 0, 0, size - 1, size - 1
        half = (self.rf - 1) / 2

        def span(k: int) -> tuple[int, int]:
            centre = self.start + k * self.jump
            return max(0, math.floor(centre - half)), min(size - 1, math.ceil(centre + half))

        (y0, y1), (x0, x1) = span(i), span(j)
        return y0, x0, y1, x1


@dataclass
class _Geometry:
    rf: int
    jump: int
    start: float
    side: int  # side of the map this describes (1 once flat)
    flat: bool = False


def _side(t: torch.Tensor) -> int:
    return int(t.shape[-1]) if t.dim() == 4 else 1


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _padding(m: nn.Module) -> tuple[int, int]:
    """A conv's or pool's padding as (ph, pw); the strings 'same'/'valid' resolved (odd kernels)."""
    pad = getattr(m, "padding", 0)
    if pad == "valid":
        return 0, 0
    if pad == "same":
        (kh, kw), (dh, dw) = _pair(m.kernel_size), _pair(m.dilation)
        return dh * (kh - 1) // 2, dw * (kw - 1) // 2
    return _pair(pad)


def _window(m: nn.Module, n_in: int, n_out: int) -> tuple[int, int, int, int] | None:
    """(kernel, stride, padding, dilation) along the height axis for sliding-window layers, else None."""
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k, s, d = _pair(m.kernel_size)[0], _pair(m.stride or m.kernel_size)[0], _pair(getattr(m, "dilation", 1))[0]
        return k, s, _padding(m)[0], d
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and n_out < n_in:
        stride = n_in // n_out
        return n_in - (n_out - 1) * stride, stride, 0, 1
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):  # upsampling: every unit sees the whole map
        return n_in, 1, 0, 1
    return None


def window_of(m: nn.Module) -> dict[str, list[int]] | None:
    """A conv's or pool's kernel, stride, padding and dilation as (h, w) pairs, for the page to draw; else None."""
    if not isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        return None
    stride = _pair(m.stride or m.kernel_size)
    return {
        "kernel": list(_pair(m.kernel_size)),
        "stride": list(stride),
        "padding": list(_padding(m)),
        "dilation": list(_pair(getattr(m, "dilation", 1))),
    }


class _Recorder:
    """The hooks of :func:`record`; geometry is keyed by the id of the tensor it describes."""

    def __init__(self, model: nn.Module):
        self.names = {m: n for n, m in model.named_modules()}
        self.records: list[LayerRecord] = []
        self.geometry: dict[int, _Geometry] = {}
        self.keep: list[torch.Tensor] = []  # holds tensors alive so their ids stay unique
        self.pending: dict[nn.Module, tuple[torch.Tensor, _Geometry, bool, int | None]] = {}
        self.calls: dict[nn.Module, int] = {}
        self.producer: dict[int, int] = {}  # id of a tensor -> 1 + index of the record that made it (0: input)

    def start(self, x: torch.Tensor) -> None:
        self.geometry[id(x)] = _Geometry(1, 1, 0.0, _side(x))
        self.producer[id(x)] = 0
        self.keep.append(x)

    def _lookup(self, x: torch.Tensor) -> tuple[_Geometry, bool]:
        if id(x) in self.geometry:
            return self.geometry[id(x)], True
        # made by a functional op (add, cat, flatten): the widest geometry seen on a map of this size
        same = [g for g in self.geometry.values() if g.side == _side(x)] or list(self.geometry.values())
        return max(same, key=lambda g: (g.rf, g.jump)), False

    def pre_hook(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        if x is not None:
            geometry, exact = self._lookup(x)
            self.pending[module] = (x.detach()[0].clone(), geometry, exact, self.producer.get(id(x)))

    def hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if module not in self.pending or not isinstance(output, torch.Tensor):
            return
        x, g, exact, source = self.pending.pop(module)
        win = _window(module, g.side, _side(output))
        rf, jump, start, flat = g.rf, g.jump, g.start, g.flat
        if win is not None and output.dim() == 4:
            k, s, p, d = win
            k_eff = d * (k - 1) + 1
            start += ((k_eff - 1) / 2 - p) * jump  # with the jump of the input
            rf, jump = receptive_field_step(rf, jump, k, s, d)
        if output.dim() < 4 and g.side > 1:  # flat after a map: each unit sees the whole map
            rf, jump, flat = rf + (g.side - 1) * jump, jump * g.side, True
        geometry = _Geometry(rf, jump, start, _side(output), flat)
        self.geometry[id(output)] = geometry
        self.keep.append(output)
        n = self.calls[module] = self.calls.get(module, 0) + 1
        name = self.names.get(module) or type(module).__name__
        own = sum(p.numel() for p in module.parameters(recurse=False)) if n == 1 else 0
        y = output.detach()[0].clone()
        rec = LayerRecord(name if n == 1 else f"{name}#{n}", type(module).__name__, module, x, y, own, rf, jump, start)
        rec.rf_exact, rec.flat, rec.source = exact, flat, source
        self.records.append(rec)
        self.producer[id(output)] = len(self.records)


def record(model: nn.Module, x: torch.Tensor) -> tuple[list[LayerRecord], torch.Tensor]:
    """Run ``model`` (in eval mode) on one normalised input (1, C, H, W); returns (records, logits (K,))."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise CnnlabError(f"record() takes one image as (1, C, H, W), got {tuple(x.shape)}")
    rec = _Recorder(model)
    leaves = [m for m in model.modules() if not list(m.children()) and not isinstance(m, nn.Identity)]
    handles = [m.register_forward_pre_hook(rec.pre_hook) for m in leaves]
    handles += [m.register_forward_hook(rec.hook) for m in leaves]
    model.eval()
    try:
        rec.start(x)
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    logits = out if isinstance(out, torch.Tensor) else out[0]
    return rec.records, logits.detach()[0].float()


# ---- the arithmetic of one unit ---------------------------------------------------------------------
def _f(t: torch.Tensor | float) -> float:
    return float(t.detach()) if isinstance(t, torch.Tensor) else float(t)


def _conv(rec: LayerRecord, c: int, i: int, j: int) -> dict[str, Any]:
    m: nn.Conv2d = rec.module  # type: ignore[assignment]
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation), _padding(m)
    per_group = m.in_channels // m.groups
    g = c // (m.out_channels // m.groups)
    xin = rec.x[g * per_group : (g + 1) * per_group].double()  # (Cg, H, W): the channels this filter reads
    mode = {"zeros": "constant"}.get(m.padding_mode, m.padding_mode)
    padded = F.pad(xin[None], (pw, pw, ph, ph), mode=mode)[0]
    y0, x0 = i * sh, j * sw  # top-left of the window in padded coordinates
    patch = padded[:, y0 : y0 + dh * (kh - 1) + 1 : dh, x0 : x0 + dw * (kw - 1) + 1 : dw]  # (Cg, kh, kw)
    kernel = m.weight[c].detach().double()  # (Cg, kh, kw)
    products = patch * kernel
    bias = _f(m.bias[c]) if m.bias is not None else 0.0
    total = _f(products.sum())
    return {
        "kind": "conv",
        "formula": "sum over channels and kernel positions of patch x kernel, plus bias",
        "channels": list(range(g * per_group, (g + 1) * per_group)),
        "origin": [y0 - ph, x0 - pw],  # input coordinate of the patch's top-left (negative: padding)
        "stride": [sh, sw],
        "dilation": [dh, dw],
        "padding": [ph, pw],
        "patch": patch.tolist(),
        "kernel": kernel.tolist(),
        "products": products.tolist(),
        "channel_sums": products.sum((1, 2)).tolist(),
        "sum": total,
        "bias": bias,
        "computed": total + bias,
    }


def _linear(rec: LayerRecord, c: int, i: int, j: int, top: int = 32) -> dict[str, Any]:
    m: nn.Linear = rec.module  # type: ignore[assignment]
    x = rec.x.reshape(-1).double()  # (F,)
    w = m.weight[c].detach().double()  # (F,)
    products = x * w
    order = products.abs().argsort(descending=True)[:top]
    shown = [{"index": int(k), "x": _f(x[k]), "w": _f(w[k]), "product": _f(products[k])} for k in order]
    bias = _f(m.bias[c]) if m.bias is not None else 0.0
    total = _f(products.sum())
    return {
        "kind": "linear",
        "formula": "sum over inputs of x[k] * w[k], plus bias",
        "n_terms": len(x),
        "terms": shown,  # the largest |x * w| first
        "rest_sum": total - sum(t["product"] for t in shown),
        "sum": total,
        "bias": bias,
        "computed": total + bias,
    }


def _batchnorm(rec: LayerRecord, c: int, i: int, j: int) -> dict[str, Any]:
    m = rec.module
    x = _f(rec.x[c, i, j] if rec.x.dim() == 3 else rec.x[c])
    mean, var = _f(m.running_mean[c]), _f(m.running_var[c])
    gamma = _f(m.weight[c]) if m.weight is not None else 1.0
    beta = _f(m.bias[c]) if m.bias is not None else 0.0
    normalised = (x - mean) / math.sqrt(var + m.eps)
    return {
        "kind": "batchnorm",
        "formula": "(x - mean) / sqrt(var + eps) * gamma + beta",
        "input": x,
        "mean": mean,
        "var": var,
        "eps": m.eps,
        "gamma": gamma,
        "beta": beta,
        "normalised": normalised,
        "computed": normalised * gamma + beta,
    }


def _pool_window(rec: LayerRecord, c: int, i: int, j: int) -> tuple[torch.Tensor, int, int, bool]:
    """(window values (kh, kw) with NaN where it hangs over the padding, top row, left column, pads count)."""
    m = rec.module
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):  # bins as torch computes them
        (h, w), (oh, ow) = rec.x.shape[-2:], rec.y.shape[-2:]
        r0, r1 = (i * h) // oh, -(-((i + 1) * h) // oh)
        c0, c1 = (j * w) // ow, -(-((j + 1) * w) // ow)
        return rec.x[c, r0:r1, c0:c1].double(), r0, c0, False
    (kh, kw), (ph, pw) = _pair(m.kernel_size), _padding(m)
    (sh, sw), (dh, dw) = _pair(m.stride or m.kernel_size), _pair(getattr(m, "dilation", 1))
    padded = F.pad(rec.x[c].double(), (pw, pw, ph, ph), value=float("nan"))  # NaN marks padding
    y0, x0 = i * sh, j * sw
    window = padded[y0 : y0 + dh * (kh - 1) + 1 : dh, x0 : x0 + dw * (kw - 1) + 1 : dw]
    return window, y0 - ph, x0 - pw, bool(getattr(m, "count_include_pad", False))


def _maxpool(rec: LayerRecord, c: int, i: int, j: int) -> dict[str, Any]:
    window, top, left, _ = _pool_window(rec, c, i, j)
    filled = torch.nan_to_num(window, nan=-math.inf)  # padding never wins
    k = int(filled.argmax())
    r, q = divmod(k, window.shape[1])
    step = _pair(getattr(rec.module, "dilation", 1))
    return {
        "kind": "maxpool",
        "formula": "max over the window",
        "channel": c,
        "origin": [top, left],
        "dilation": list(step),
        "window": [[None if math.isnan(v) else v for v in row] for row in window.tolist()],
        "winner": [r, q],  # row, column inside the window
        "winner_input": [top + r * step[0], left + q * step[1]],  # the winning unit in the layer's input
        "computed": _f(filled.max()),
    }


def _avgpool(rec: LayerRecord, c: int, i: int, j: int) -> dict[str, Any]:
    window, top, left, include_pad = _pool_window(rec, c, i, j)
    valid = ~torch.isnan(window)
    total = _f(torch.nan_to_num(window, nan=0.0).sum())
    count = window.numel() if include_pad else int(valid.sum())
    count = getattr(rec.module, "divisor_override", None) or count
    return {
        "kind": "avgpool",
        "formula": "sum of the window / number of values",
        "channel": c,
        "origin": [top, left],
        "window": [[None if math.isnan(v) else v for v in row] for row in window.tolist()],
        "sum": total,
        "count": count,
        "computed": total / count,
    }


_FORMULAS = {
    "ReLU": "max(0, x)",
    "ReLU6": "min(max(0, x), 6)",
    "LeakyReLU": "x if x > 0 else slope * x",
    "Tanh": "tanh(x)",
    "Sigmoid": "1 / (1 + exp(-x))",
    "SiLU": "x * sigmoid(x)",
    "GELU": "x * Phi(x)",
    "Hardswish": "x * min(max(x + 3, 0), 6) / 6",
    "Hardsigmoid": "min(max(x + 3, 0), 6) / 6",
    "ELU": "x if x > 0 else exp(x) - 1",
    "Softplus": "log(1 + exp(x))",
    "Mish": "x * tanh(softplus(x))",
}


def _activation(rec: LayerRecord, c: int, i: int, j: int) -> dict[str, Any]:
    x = rec.x[c, i, j] if rec.x.dim() == 3 else rec.x.reshape(-1)[c]
    out = rec.module(x.double().reshape(1).clone())  # a copy: in-place modules must not touch the record
    formula = _FORMULAS[rec.type]
    return {"kind": "activation", "function": rec.type, "formula": formula, "input": _f(x), "computed": _f(out)}


def _copy(rec: LayerRecord, c: int, i: int, j: int) -> dict[str, Any]:
    """Flatten, Dropout in eval mode and the like: the value is one input value, moved or kept."""
    if rec.y.dim() == 1 and rec.x.dim() == 3:  # flatten (C, H, W) -> (C*H*W,): row-major order
        src = list(divmod(c, rec.x.shape[1] * rec.x.shape[2]))
        src = [src[0], *divmod(src[1], rec.x.shape[2])]
    else:
        src = [c, i, j] if rec.x.dim() == 3 else [c]
    note = f"{rec.type}: identity at inference"
    if rec.type == "Flatten":
        note = "flatten: unit (c, y, x) moves to c*H*W + y*W + x"
    return {"kind": "copy", "formula": note, "source": src, "computed": _f(rec.x[tuple(src)])}


_RULES: dict[type, Callable[[LayerRecord, int, int, int], dict[str, Any]]] = {
    nn.Conv2d: _conv,
    nn.Linear: _linear,
    nn.BatchNorm1d: _batchnorm,
    nn.BatchNorm2d: _batchnorm,
    nn.MaxPool2d: _maxpool,
    nn.AdaptiveMaxPool2d: _maxpool,
    nn.AvgPool2d: _avgpool,
    nn.AdaptiveAvgPool2d: _avgpool,
    nn.Flatten: _copy,
    nn.Dropout: _copy,
    nn.Dropout2d: _copy,
    **{getattr(nn, name): _activation for name in _FORMULAS},
}


def unit_arithmetic(rec: LayerRecord, c: int, i: int = 0, j: int = 0) -> dict[str, Any]:
    """How unit (c, i, j) of ``rec``'s output (c alone for flat outputs) was computed.

    Returns a dict with ``kind`` (conv, linear, batchnorm, maxpool, avgpool, activation, copy or
    other), the numbers of that kind, ``computed`` (recomputed here in float64; absent for
    "other") and ``value`` (what the layer actually produced).
    """
    shape = tuple(rec.y.shape)
    index = (c, i, j) if rec.y.dim() == 3 else (c,)
    if rec.y.dim() not in (1, 3) or any(not 0 <= v < n for v, n in zip(index, shape)):
        raise CnnlabError(f"unit {index} is outside layer {rec.name}'s output of shape {list(shape)}")
    rule = _RULES.get(type(rec.module))
    if isinstance(rec.module, nn.modules.batchnorm._BatchNorm) and rec.module.running_mean is None:
        rule = None  # batch statistics only: nothing fixed to show
    out = rule(rec, c, i, j) if rule else {"kind": "other", "formula": f"{rec.type}: no worked arithmetic"}
    return {**out, "layer": rec.name, "type": rec.type, "index": list(index), "value": _f(rec.y[index])}


def softmax_arithmetic(logits: torch.Tensor) -> dict[str, Any]:
    """p_k = exp(z_k - max z) / sum_j exp(z_j - max z), with every intermediate number (float64)."""
    z = logits.double()
    top = z.max()
    exps = torch.exp(z - top)
    total = exps.sum()
    return {
        "formula": "p_k = exp(z_k - max z) / sum_j exp(z_j - max z)",
        "logits": z.tolist(),
        "max": _f(top),
        "exps": exps.tolist(),
        "sum": _f(total),
        "probs": (exps / total).tolist(),
    }
