"""Custom sequential networks described in YAML: the ``custom`` model.

Seed 002 ("Designing your own CNN") builds networks by stacking conv -> norm -> activation -> pool
blocks and ending with a flatten and a linear classifier. A spec file says exactly that, one layer per
line, and never repeats a channel count: each layer's input channels/features are inferred from the
layer before (a dummy forward pass), so only outputs are written::

    name: small_cnn            # optional; shown in summaries
    layers:
      - conv: {out: 32, k: 3}  # padding defaults to "same" (k // 2 * d); s, p, d, groups, bias optional
      - bn                     # = norm: batch (also layer, group, instance)
      - act: relu              # relu, leaky_relu, sigmoid, tanh, silu/swish, gelu, ...
      - pool: {type: max, k: 2}
      - dropout: 0.25
      - flatten
      - linear: {out: 128}
      - act: relu
      - linear: {out: classes} # "classes" is replaced by num_classes

A layer is a bare name (``bn``, ``flatten``, ``gap``) or a one-key mapping whose value is either a
mapping of options or a single value for the main option (``conv: 32``, ``act: gelu``, ``pool: max``,
``dropout: 0.5``, ``linear: classes``). A top-level list without ``name``/``layers`` works too.
Mistakes raise :class:`CnnlabError` naming the layer index, its type and the bad key, with the
allowed keys. ``configs/models/`` has examples; ``cnnlab summary configs/models/small_cnn.yaml``
prints one.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.models import register_model
from cnnlab.models.blocks import (
    DepthwiseSeparableConv,
    SqueezeExcite,
    make_activation,
    make_norm,
    make_pool,
)
from cnnlab.readers import read_json, read_yaml
from cnnlab.registry import Registry

LAYERS: Registry = Registry("layer type")
# the option a scalar value stands for (``conv: 32`` means ``conv: {out: 32}``)
_MAIN_KEY = {"conv": "out", "dwsep": "out", "conv_t": "out", "linear": "out", "act": "type", "norm": "type"}
_MAIN_KEY.update({"pool": "type", "dropout": "p", "dropout2d": "p", "se": "reduction"})


class _Ctx:
    """What a layer builder may know about its input: the shape of one sample and the class count."""

    def __init__(self, shape: tuple[int, ...], num_classes: int):
        self.shape, self.num_classes = shape, num_classes

    @property
    def channels(self) -> int:
        if len(self.shape) != 3:
            raise CnnlabError(f"needs a feature map (C, H, W), gets flat features {self.shape}; put it before flatten")
        return self.shape[0]

    @property
    def features(self) -> int:
        if len(self.shape) != 1:
            raise CnnlabError(f"needs flat features but gets a feature map {self.shape}; add 'flatten' before it")
        return self.shape[0]

    def count(self, out: int | str) -> int:
        if out in ("classes", "num_classes"):
            return self.num_classes
        if isinstance(out, bool) or not isinstance(out, int) or out < 1:
            raise CnnlabError(f"'out' must be a positive integer or 'classes', got {out!r}")
        return out


def _register(name: str) -> Callable:
    return LAYERS.register(name)


@_register("conv")
def _conv(ctx: _Ctx, *, out, k: int = 3, s: int = 1, p: int | str = "same", d: int = 1, groups: int = 1, bias=True):
    p = d * (k - 1) // 2 if p == "same" else p
    return nn.Conv2d(ctx.channels, ctx.count(out), k, stride=s, padding=p, dilation=d, groups=groups, bias=bias)


@_register("dwsep")
def _dwsep(ctx: _Ctx, *, out, k: int = 3, s: int = 1, norm: str = "batch", act: str = "relu"):
    return DepthwiseSeparableConv(ctx.channels, ctx.count(out), k, s, norm=norm, act=act)


@_register("conv_t")
def _conv_t(ctx: _Ctx, *, out, k: int = 2, s: int = 2, p: int = 0, bias: bool = True):
    return nn.ConvTranspose2d(ctx.channels, ctx.count(out), k, stride=s, padding=p, bias=bias)


@_register("linear")
def _linear(ctx: _Ctx, *, out, bias: bool = True):
    return nn.Linear(ctx.features, ctx.count(out), bias=bias)


@_register("norm")
def _norm(ctx: _Ctx, *, type: str = "batch", groups: int = 32):
    kw = {"groups": groups} if type == "group" else {}
    return make_norm(type, ctx.shape[0], dim=2 if len(ctx.shape) == 3 else 1, **kw)


@_register("bn")
def _bn(ctx: _Ctx):
    return _norm(ctx, type="batch")


@_register("act")
def _act(ctx: _Ctx, *, type: str = "relu", **kw):
    return make_activation(type, **kw)


@_register("pool")
def _pool(ctx: _Ctx, *, type: str = "max", k: int = 2, s: int | None = None, p: int = 0):
    ctx.channels  # noqa: B018 - pooling needs a feature map; raises a clear error after flatten
    return make_pool(type) if type.startswith("global") else make_pool(type, k=k, s=s, p=p)


@_register("gap")
def _gap(ctx: _Ctx):
    return nn.AdaptiveAvgPool2d(1)


@_register("dropout")
def _dropout(ctx: _Ctx, *, p: float = 0.5):
    return nn.Dropout(p)


@_register("dropout2d")
def _dropout2d(ctx: _Ctx, *, p: float = 0.5):
    return nn.Dropout2d(p)


@_register("flatten")
def _flatten(ctx: _Ctx):
    return nn.Flatten()


@_register("se")
def _se(ctx: _Ctx, *, reduction: int = 16):
    return SqueezeExcite(ctx.channels, reduction=reduction)


# ---------------------------------------------------------------- spec parsing


def load_spec(spec: str | Path | list | dict) -> tuple[str, list]:
    """Return (name, list of layer entries) from a YAML/JSON path, a list, or a {name, layers} mapping."""
    name = "custom"
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_file():
            raise CnnlabError(f"model spec {str(path)!r} not found; pass the path of a YAML file with a 'layers' list.")
        name = path.stem
        json_file = path.suffix == ".json"
        spec = read_json(path, "model spec", expect=None) if json_file else read_yaml(path, "model spec")
    if isinstance(spec, dict):
        unknown = set(spec) - {"name", "layers"}
        if unknown or "layers" not in spec:
            raise CnnlabError(f"a model spec mapping has keys 'name' (optional) and 'layers'; got {sorted(spec)}.")
        name, spec = str(spec.get("name", name)), spec["layers"]
    if not isinstance(spec, list) or not spec:
        raise CnnlabError("a model spec needs a non-empty list of layers, e.g. [{conv: {out: 32}}, bn, {act: relu}].")
    return name, spec


def _parse_entry(i: int, entry: Any) -> tuple[str, dict]:
    if isinstance(entry, str):
        kind, args = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        kind, args = next(iter(entry.items()))
        if args is None:
            args = {}
        elif not isinstance(args, dict):
            if kind not in _MAIN_KEY:
                raise CnnlabError(f"layer {i} ({kind}): takes no value, write it as a bare '- {kind}'.")
            args = {_MAIN_KEY[kind]: args}
    else:
        example = "a name like 'bn' or a one-key mapping like 'conv: {out: 32}'"
        raise CnnlabError(f"layer {i}: expected {example}; got {entry!r}")
    if kind not in LAYERS:
        hint = did_you_mean(str(kind), LAYERS)
        raise CnnlabError(f"layer {i}: unknown layer type {kind!r}.{hint} Known: {', '.join(LAYERS)}.")
    return kind, args


def _check_keys(i: int, kind: str, args: dict) -> None:
    params = list(inspect.signature(LAYERS.get(kind)).parameters.values())[1:]  # skip ctx
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return  # activations pass their own options through (e.g. negative_slope)
    allowed = [p.name for p in params]
    for key in args:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed)
            allowed_text = ", ".join(allowed) or "none"
            raise CnnlabError(f"layer {i} ({kind}): unknown key {key!r}.{hint} Allowed: {allowed_text}.")
    for p in params:
        if p.default is p.empty and p.name not in args:
            raise CnnlabError(f"layer {i} ({kind}): missing required key {p.name!r}.")


class CustomNet(nn.Sequential):
    """A sequential network built from a spec; ``spec`` keeps the resolved layer list (for model files)."""

    def __init__(self, layers: OrderedDict[str, nn.Module], name: str, spec: list):
        super().__init__(layers)
        self.spec_name, self.spec = name, spec


def build_custom(spec: Any, num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> CustomNet:
    """Build a :class:`CustomNet` from ``spec`` for inputs (in_channels, input_size, input_size)."""
    name, entries = load_spec(spec)
    ctx = _Ctx((in_channels, input_size, input_size), num_classes)
    x = torch.zeros(1, *ctx.shape)  # follows the default device (meta when summarising)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, entry in enumerate(entries):
        kind, args = _parse_entry(i, entry)
        _check_keys(i, kind, args)
        try:
            layer = LAYERS.get(kind)(ctx, **args)
            layer.eval()  # batch of one through BatchNorm1d
            with torch.no_grad():
                x = layer(x)
        except CnnlabError as exc:
            raise CnnlabError(f"layer {i} ({kind}): {exc}") from None
        except (TypeError, ValueError, RuntimeError) as exc:
            raise CnnlabError(f"layer {i} ({kind}) with {args} on input {ctx.shape}: {exc}") from None
        layer.train()
        layers[f"{i}_{kind}"] = layer
        ctx.shape = tuple(x.shape[1:])
    if ctx.shape != (num_classes,):
        raise CnnlabError(
            f"model spec {name!r} ends with output shape {ctx.shape}, but a classifier must end with "
            f"({num_classes},): finish with 'flatten' (or 'gap' + 'flatten') and 'linear: {{out: classes}}'."
        )
    return CustomNet(layers, name, entries)


@register_model
def custom(
    *, spec: Any = None, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, **kw: Any
) -> nn.Module:
    """A sequential net from a YAML spec (``spec=PATH`` or a list of layers); see configs/models/."""
    if spec is None:
        raise CnnlabError("model 'custom' needs spec=PATH (a YAML file such as configs/models/small_cnn.yaml).")
    if kw:
        raise CnnlabError(f"model 'custom' takes spec, num_classes, in_channels, input_size; unexpected {sorted(kw)}.")
    return build_custom(spec, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
