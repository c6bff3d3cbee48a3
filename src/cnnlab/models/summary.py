"""Per-layer model summary: output shapes, parameters, MACs, receptive field and activation memory.

Like Keras' ``model.summary()`` but with the quantities seed 002 teaches you to compute by hand:
parameters (``k_h k_w C_in C_out + C_out`` for a conv), multiply-accumulates (MACs), and the
receptive field ``RF_L = 1 + sum_l (k_l - 1) prod_{i<l} s_i`` with its "jump" (the distance in input
pixels between neighbouring units), both from :func:`cnnlab.arithmetic.receptive_field_step`.
Forward hooks on every leaf module record what actually runs, so the table is right for any
``nn.Module``. A named model is built on torch's ``meta`` device (no memory, no initialisation), given
CPU memory zeroed where the pass reads it, and run once with its convolutions and linear layers as shape-only stand-ins
(the output shape from the layer's own arithmetic, so hooks still see every layer): the counts are
those of the real network, and even VGG-16 at 224 px summarises in tens of milliseconds. (A forward
on ``meta`` itself would import torch's symbolic shapes and TorchDynamo, ~2 s of a 2-core machine.)

Receptive fields are tracked per tensor: each hooked layer looks up the (rf, jump) of the tensor it
received. When a tensor was made by a functional op between modules (``x + shortcut`` in a ResNet,
``torch.cat`` in Inception and DenseNet), its value is the *largest* one recorded so far on a feature
map of the same size, i.e. the largest RF over the merged branches; such summaries are flagged
``rf_exact = False``. Squeeze-excitation gates see the whole image through their global pooling;
like most tools we leave that global context out and report the local (convolutional) RF. For purely
sequential nets the figures are exact. MACs count conv, transposed-conv and linear layers (one
multiply-add per weight use); normalisation, activations and pooling are elementwise and not counted.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from cnnlab.arithmetic import conv_macs, receptive_field_step
from cnnlab.errors import CnnlabError
from cnnlab.summary_table import LayerRow, Summary, parse_input_shape, shape_text  # noqa: F401 - re-exported


def _builder_default(name: str, key: str, fallback: int) -> int:
    """A registered builder's default for the keyword ``key`` (``fallback`` where it has none)."""
    from cnnlab.models import MODELS

    p = inspect.signature(MODELS.get(name)).parameters.get(key)
    return fallback if p is None or p.default is inspect.Parameter.empty else int(p.default)


def default_input_shape(name: str) -> tuple[int, int, int]:
    """A registered model's natural input, read from its builder's ``in_channels``/``input_size`` defaults."""
    size = _builder_default(name, "input_size", 32)
    return _builder_default(name, "in_channels", 3), size, size


def default_num_classes(name: str) -> int:
    """A registered model's own class count, its builder's ``num_classes`` default (10 where it has none)."""
    return _builder_default(name, "num_classes", 10)


def build_model(
    name: str, input_shape: tuple[int, int, int], num_classes: int | None = None, device: str = "cpu", **kw: Any
) -> nn.Module:
    """Build a registered model for ``input_shape`` (C, H, W); on ``device="meta"`` nothing is allocated
    and nothing initialised."""
    from cnnlab.models import create_model

    c, h, w = input_shape
    if num_classes is not None:
        kw["num_classes"] = num_classes
    try:
        if str(device) == "meta":
            return meta_model(name, in_channels=c, input_size=h, **kw)
        with torch.device(device):
            return create_model(name, in_channels=c, input_size=h, **kw)
    except (ValueError, RuntimeError) as exc:  # a builder refusing this input size or channel count
        raise CnnlabError(f"model {name!r} cannot be built for input {shape_text(input_shape)}: {exc}") from exc


def meta_model(name: str, **kw: Any) -> nn.Module:
    """``create_model(name, **kw)`` on the meta device: shapes and parameter counts, with nothing allocated
    and no initialiser run (on meta some import TorchDynamo, ~1 s, for values a meta tensor cannot hold)."""
    from cnnlab.models import create_model

    with torch.device("meta"), _NoValues():
        return create_model(name, **kw)


# value writes of initialisers; on meta they write nothing, and some (normal_, erfinv_) run through torch's
# Python references, whose first use imports TorchDynamo (~1 s)
_FILLS = frozenset(
    getattr(torch.Tensor, op)
    for op in ("normal_", "uniform_", "fill_", "zero_", "copy_", "erfinv_", "clamp_", "mul_", "add_", "sub_", "div_")
)


class _NoValues(TorchFunctionMode):
    """Meta tensors hold no values, so while a network is built on the meta device, or given memory, what
    writes or copies values is skipped: ``torch.nn.init`` functions and in-place fills return their tensor
    untouched, and ``to_empty``'s ``empty_like`` becomes ``empty`` of the same shape (``empty_like`` of a
    meta tensor runs torch's Python reference, which imports its symbolic shapes: sympy, ~1 s)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _FILLS or getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        if func is torch.empty_like and args[0].is_meta and set(kwargs) <= {"device"}:
            return torch.empty(args[0].shape, dtype=args[0].dtype, device=kwargs.get("device", "meta"))
        return func(*args, **kwargs)


# ---------------------------------------------------------------- receptive-field and MAC rules per layer


def _height(v: int | tuple[int, ...]) -> int:
    """Height component of a torch size argument (an int or an (h, w) tuple)."""
    return v[0] if isinstance(v, tuple) else v


def _window(module: nn.Module, in_shape: torch.Size, out_shape: torch.Size) -> tuple[int, int, int] | None:
    """(kernel, stride, dilation) along the height axis for layers that slide a window, else None."""
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        # square windows in practice: the height component stands for both axes
        k, s, d = (_height(v) for v in (module.kernel_size, module.stride, getattr(module, "dilation", 1)))
        return k, s or k, d
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and len(in_shape) == 4:
        n, o = in_shape[-2], out_shape[-2]
        if o >= n:  # upsampling (e.g. a 1x1 map to VGG's 7x7): bins of one or two inputs, no new stride
            return max(-(-(i + 1) * n // o) - i * n // o for i in range(o)), 1, 1
        stride = n // o
        return n - (o - 1) * stride, stride, 1
    return None


def _macs(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d) and y.dim() == 4:
        c_in, c_out, k, g = module.in_channels, module.out_channels, module.kernel_size, module.groups
        return conv_macs(c_in, c_out, k, y.shape[-2], y.shape[-1], g)
    if isinstance(module, nn.ConvTranspose2d) and x.dim() == 4:
        kh, kw = module.kernel_size
        per_pixel = module.in_channels * (module.out_channels // module.groups) * kh * kw
        return per_pixel * x.shape[-2] * x.shape[-1]
    if isinstance(module, nn.Linear):
        rows = y[0].numel() // module.out_features  # > 1 when a (B, T, F) sequence goes in
        return module.in_features * module.out_features * rows
    return 0


@dataclass
class _RF:
    rf: int
    jump: int
    spatial: int  # side of the feature map this value belongs to (1 once features are flat)


def _spatial(t: torch.Tensor) -> int:
    return max(t.shape[-2], t.shape[-1]) if t.dim() == 4 else 1


class _Tracker:
    """Forward hooks that fill rows; receptive fields are keyed by the id of the tensor they describe."""

    def __init__(self, model: nn.Module):
        self.rows: list[LayerRow] = []
        self.rf: dict[int, _RF] = {}
        self.keep: list[torch.Tensor] = []  # holds tensors alive so their ids stay unique
        self.seen: set[int] = set()
        self.exact = True
        self.names = {m: n for n, m in model.named_modules()}

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return _leaves(model)

    def start(self, x: torch.Tensor) -> None:
        self.rf[id(x)] = _RF(1, 1, _spatial(x))
        self.keep.append(x)

    def _lookup(self, x: torch.Tensor) -> _RF:
        if id(x) not in self.rf:
            # made by a functional op (add, cat, flatten, ...): take the largest RF recorded so far on a map
            # of the same size, so that global-context gates (squeeze-excitation) do not count as merged branches
            self.exact = False
            same = [v for v in self.rf.values() if v.spatial == _spatial(x)] or list(self.rf.values())
            best = max(same, key=lambda v: (v.rf, v.jump), default=_RF(1, 1, _spatial(x)))
            self.rf[id(x)] = best
            self.keep.append(x)
        return self.rf[id(x)]

    def hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        y = output if isinstance(output, torch.Tensor) else None
        if x is None or y is None:
            return
        state = self._lookup(x)
        rf, jump = state.rf, state.jump
        win = _window(module, x.shape, y.shape)
        if win is not None:
            rf, jump = receptive_field_step(rf, jump, *win)
        elif isinstance(module, nn.ConvTranspose2d):
            # upsampling: each output unit sees ceil(k/s) input units; the jump shrinks by s (kept >= 1)
            k, s = module.kernel_size[0], module.stride[0]
            rf, jump = rf + (math.ceil(k / s) - 1) * jump, max(jump // s, 1)
        if y.dim() < 4 and state.spatial > 1:
            # flat features after a feature map (flatten, or a linear layer on it): every unit sees it all
            rf, jump = rf + (state.spatial - 1) * jump, jump * state.spatial
        self.rf[id(y)] = _RF(rf, jump, _spatial(y))
        self.keep.append(y)
        own = list(module.parameters(recurse=False)) if module not in self.seen else []
        self.seen.add(module)
        self.rows.append(
            LayerRow(
                name=self.names.get(module, "?") or type(module).__name__,
                type=type(module).__name__,
                output_shape=tuple(y.shape[1:]),
                params=sum(p.numel() for p in own),
                trainable=sum(p.numel() for p in own if p.requires_grad),
                macs=_macs(module, x, y),
                rf=rf,
                jump=jump,
                activation_bytes=y[0].numel() * y.element_size(),
            )
        )


def _first_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]  # (logits, aux...) contract: the main output comes first
    raise CnnlabError(f"cannot summarise a model whose output is {type(out).__name__}; expected a tensor.")


def summary(
    model_or_name: nn.Module | str,
    input_shape: tuple[int, int, int] | None = None,
    *,
    num_classes: int | None = None,
    device: str | None = None,
    **model_kwargs: Any,
) -> Summary:
    """Summarise a model (an ``nn.Module`` or a registered name) for one input of ``input_shape`` (C, H, W).

    Args:
        model_or_name: a module, or a registered model name (built for ``input_shape`` with
            ``num_classes`` and ``model_kwargs``).
        input_shape: (C, H, W); defaults to a named model's natural input; required for modules.
        device: where to run; defaults for names to shapes only (zeroed CPU memory, convolutions and
            linear layers as shape stand-ins) and to the module's own device for modules; ``"meta"``
            computes nothing (its first forward imports torch's symbolic shapes, ~2 s).

    Returns:
        A :class:`Summary`; ``print(s.table())`` shows it.
    """
    shape_only = isinstance(model_or_name, str) and device is None
    if isinstance(model_or_name, str):
        name = model_or_name
        input_shape = tuple(input_shape or default_input_shape(name))
        model = build_model(name, input_shape, num_classes, device or "meta", **model_kwargs)
        if shape_only:
            device = _materialise(model)
    else:
        model, name = model_or_name, type(model_or_name).__name__
        if input_shape is None:
            raise CnnlabError("summary(model) needs input_shape=(C, H, W), e.g. (3, 32, 32).")
        first = next(model.parameters(), None)
        device = device or (str(first.device) if first is not None else "cpu")
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) != 3:
        raise CnnlabError(f"input_shape must be (C, H, W), got {input_shape}.")
    return _run(model, name, input_shape, device, shape_only)


def _materialise(model: nn.Module) -> str:
    """CPU memory for a network built on the meta device, zeroed where a shape-only pass reads it (so no
    NaN or denormal slows it); the weights of layers that run as shape stand-ins stay untouched (VGG-16's
    138 M parameters are never written, so never paged in). Returns the device, ``"cpu"``."""
    with _NoValues():
        model.to_empty(device="cpu")
    skipped = {id(t) for m in model.modules() if _stand_in(m) is not None for t in m.parameters(recurse=False)}
    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            if id(t) not in skipped:
                t.zero_()
    return "cpu"


def _conv_shape(module: nn.Conv2d, x: torch.Tensor) -> tuple[int, ...] | None:
    """Output shape of a zero-padded ``nn.Conv2d`` on ``x`` (B, C, H, W) by its own arithmetic
    (``floor((n + 2p - d(k - 1) - 1) / s) + 1`` per axis); None where torch would refuse the input."""
    if x.dim() != 4 or x.shape[1] != module.in_channels:
        return None
    if module.padding == "same":
        sizes = list(x.shape[-2:])
    else:
        pads = (0, 0) if module.padding == "valid" else module.padding
        geometry = zip(x.shape[-2:], module.kernel_size, module.stride, pads, module.dilation)
        sizes = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in geometry]
    return (x.shape[0], module.out_channels, *sizes) if min(sizes) > 0 else None


def _linear_shape(module: nn.Linear, x: torch.Tensor) -> tuple[int, ...] | None:
    return (*x.shape[:-1], module.out_features) if x.dim() and x.shape[-1] == module.in_features else None


def _batch_norm_shape(module: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> tuple[int, ...] | None:
    """BatchNorm's output has its input's shape; None where it would refuse the input (its own check of the
    number of dimensions, or channels that are not ``num_features``)."""
    try:
        module._check_input_dim(x)
    except ValueError:
        return None
    return tuple(x.shape) if x.shape[1] == module.num_features else None


def _stand_in(module: nn.Module):
    """The output-shape rule of a layer that a shape-only pass need not compute (plain convolutions and
    linear layers, nearly all of a CNN's arithmetic, and BatchNorm, a pass over every activation), or None.
    Subclasses with their own forward (timm's padding-on-the-fly convs) run as they are."""
    forward = type(module).forward
    if forward is nn.Conv2d.forward and module.padding_mode == "zeros":
        return _conv_shape
    if forward is nn.Linear.forward:
        return _linear_shape
    if forward is nn.modules.batchnorm._BatchNorm.forward:
        return _batch_norm_shape
    return None


def _shape_only_layers(model: nn.Module) -> list[nn.Module]:
    """Swap convolutions and linear layers for stand-ins that return zeros of the output shape; an input
    the layer would refuse runs the real layer (zeroed first), so its error is torch's own."""
    swapped = []
    for m in model.modules():
        rule = _stand_in(m)
        if rule is None:
            continue

        def forward(x: torch.Tensor, m: nn.Module = m, rule=rule) -> torch.Tensor:
            shape = rule(m, x)
            if shape is None:
                with torch.no_grad():
                    for p in m.parameters(recurse=False):
                        p.zero_()
                return type(m).forward(m, x)
            # a BatchNorm hands its input on: its output has the same shape, and this pass reads shapes only
            # (every tensor in it is zeros); the others make zeros of their output shape
            return x if rule is _batch_norm_shape else x.new_zeros(shape)

        m.forward = forward  # instance attribute shadows the class method; hooks still fire
        swapped.append(m)
    return swapped


def _shape_only_norms(model: nn.Module) -> list[nn.Module]:
    """On the meta device, normalisation layers run through slow Python decompositions (~8 ms each);
    their output has the input's shape, so a shape-only stand-in makes BN-heavy nets ~10x faster."""
    norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
    swapped = [m for m in model.modules() if isinstance(m, norms)]
    for m in swapped:
        m.forward = torch.empty_like  # instance attribute shadows the class method; hooks still fire
    return swapped


def _leaves(model: nn.Module) -> list[nn.Module]:
    """The layers a summary has a row for: modules without children, ``nn.Identity`` left out."""
    return [m for m in model.modules() if not list(m.children()) and not isinstance(m, nn.Identity)]


def _forward(model: nn.Module, name: str, input_shape: tuple[int, ...], device: str, shape_only: bool, tracker):
    """One image of zeros through ``model``, ``tracker.hook`` on ``tracker.layers(model)``; returns the output."""
    handles = [m.register_forward_hook(tracker.hook) for m in tracker.layers(model)]
    was_training = model.training
    model.eval()  # batch of one: BatchNorm1d in train mode would refuse it; eval also drops aux heads
    stand_ins = _shape_only_norms(model) if str(device) == "meta" else _shape_only_layers(model) if shape_only else []
    threads = torch.get_num_threads()
    if shape_only:  # what is left is elementwise work on one image, where intra-op threads only wait on each
        torch.set_num_threads(1)  # other: VGG-16's pass took 2.7 s on two threads against 0.1 s on one (load 5)
    try:
        x = torch.zeros(1, *input_shape, device=device)
        tracker.start(x)
        with torch.no_grad():
            try:
                return _first_tensor(model(x))
            except (RuntimeError, ValueError) as exc:
                raise CnnlabError(
                    f"{name} cannot run on input {shape_text(input_shape)}: {exc}. "
                    "Check --input (channels and size) against the model."
                ) from exc
    finally:
        for h in handles:
            h.remove()
        for m in stand_ins:
            del m.forward  # back to the class's forward
        model.train(was_training)
        torch.set_num_threads(threads)


def _run(model: nn.Module, name: str, input_shape: tuple[int, ...], device: str, shape_only: bool) -> Summary:
    tracker = _Tracker(model)
    out = _forward(model, name, input_shape, device, shape_only, tracker)
    params = list(model.parameters())
    return Summary(
        model=name,
        input_shape=input_shape,
        output_shape=tuple(out.shape[1:]),
        rows=tracker.rows,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        total_macs=sum(r.macs for r in tracker.rows),
        activation_bytes=sum(r.activation_bytes for r in tracker.rows),
        rf_exact=tracker.exact,
    )


class _MacCounter:
    """Forward hooks that only add up MACs, on the layers that carry them (those :func:`_macs` counts)."""

    def __init__(self):
        self.macs = 0

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return [m for m in _leaves(model) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]

    def start(self, x: torch.Tensor) -> None:
        pass

    def hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):  # as _Tracker's rows
            self.macs += _macs(module, inputs[0], output)


def totals(
    name: str, input_shape: tuple[int, int, int] | None = None, *, num_classes: int | None = None, **model_kwargs: Any
) -> tuple[int, int]:
    """(parameters, MACs per image) of a registered model: :func:`summary`'s ``total_params`` and
    ``total_macs`` from the same shape-only pass, with hooks only on the layers that carry MACs (no rows, no
    receptive fields): what ``cnnlab models --input`` lists."""
    input_shape = tuple(int(v) for v in input_shape or default_input_shape(name))
    model = build_model(name, input_shape, num_classes, "meta", **model_kwargs)
    counter = _MacCounter()
    _forward(model, name, input_shape, _materialise(model), True, counter)
    return sum(p.numel() for p in model.parameters()), counter.macs
