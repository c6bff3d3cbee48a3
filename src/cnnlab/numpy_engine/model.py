"""Module, Parameter and Sequential for the NumPy engine, plus initialisation and .npz save/load.

The shapes of the API follow torch so that code and state dicts can be compared one-to-one: a
:class:`Parameter` has ``data`` and ``grad`` (``None`` after ``zero_grad``, like torch's
``set_to_none=True``; backward passes add into it), modules have ``train()``/``eval()``, and
:class:`Sequential` names its state ``"0.weight"``, ``"3.running_mean"``... exactly as
``torch.nn.Sequential`` does, so torch weights load into it and back. Initialisers implement He
(Kaiming) and Xavier (Glorot) scaling (He et al. 2015; Glorot & Bengio 2010).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.files.atomic import atomic_write

_RNG = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the engine's default generator (used by initialisers and Dropout when no rng is given)."""
    global _RNG
    _RNG = np.random.default_rng(seed)


def default_rng() -> np.random.Generator:
    """The engine-wide generator set by :func:`manual_seed`."""
    return _RNG


class Parameter:
    """A trainable array and its gradient. ``grad`` is ``None`` until a backward pass fills it."""

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray):
        self.data = data
        self.grad: np.ndarray | None = None

    def accumulate(self, g: np.ndarray) -> None:
        """Add ``g`` to the gradient (torch accumulates across backward calls until zero_grad)."""
        if self.grad is None:
            self.grad = g
        else:
            self.grad += g

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class: ``forward`` caches what ``backward`` needs; ``backward(dy)`` returns dL/dx.

    Subclasses register parameters in ``self.params`` and non-trainable state (running statistics)
    in ``self.buffers``, both plain dicts name -> array/Parameter. ``needs_input_grad=False`` lets a
    layer skip computing dL/dx (set by :class:`Sequential` on its first layer during training).
    """

    def __init__(self) -> None:
        self.params: dict[str, Parameter] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training = True
        self.needs_input_grad = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def children(self) -> list[tuple[str, Module]]:
        return []

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for name, p in self.params.items():
            yield prefix + name, p
        for cname, child in self.children():
            yield from child.named_parameters(f"{prefix}{cname}.")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for name, b in self.buffers.items():
            yield prefix + name, b
        for cname, child in self.children():
            yield from child.named_buffers(f"{prefix}{cname}.")

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        self.training = mode
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def astype(self, dtype: np.dtype | type) -> Module:
        """Convert parameters and floating buffers to ``dtype`` in place (float64 for gradient checks)."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        self._cast_buffers(dtype)
        return self

    def _cast_buffers(self, dtype: np.dtype | type) -> None:
        for k, b in self.buffers.items():
            if np.issubdtype(b.dtype, np.floating):
                self.buffers[k] = b.astype(dtype)
        for _, child in self.children():
            child._cast_buffers(dtype)

    def num_parameters(self) -> int:
        return int(sum(p.data.size for p in self.parameters()))

    # --- state dicts with torch's naming ---------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        state = {k: p.data for k, p in self.named_parameters()}
        state.update(dict(self.named_buffers()))
        return state

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into this module's parameters/buffers (shapes must match; dtype is kept)."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            raise CnnlabError(
                f"state dict does not match the model: missing {missing}, unexpected {unexpected}. "
                "Build the model with the same architecture and arguments that produced the weights."
            )
        for name, value in state.items():
            if name in own:
                self._assign(name, np.asarray(value))

    def _assign(self, dotted: str, value: np.ndarray) -> None:
        head, _, rest = dotted.partition(".")
        if rest:
            dict(self.children())[head]._assign(rest, value)
            return
        if head in self.params:
            p = self.params[head]
            if p.data.shape != value.shape:
                raise CnnlabError(f"shape mismatch for {head!r}: model {p.data.shape}, file {value.shape}")
            p.data = value.astype(p.data.dtype, copy=True)
        else:
            old = self.buffers[head]
            self.buffers[head] = value.astype(old.dtype, copy=True).reshape(old.shape)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse (the chain rule, one layer at a time)."""

    def __init__(self, *layers: Module):
        super().__init__()
        self.layers = list(layers)

    def children(self) -> list[tuple[str, Module]]:
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy: np.ndarray, input_grad: bool | None = None) -> np.ndarray | None:
        """Backpropagate ``dy`` = dL/d(output). ``input_grad=False`` skips dL/d(input) of the first layer."""
        want = self.needs_input_grad if input_grad is None else input_grad
        first = self.layers[0]
        saved, first.needs_input_grad = first.needs_input_grad, want
        try:
            for layer in reversed(self.layers):
                dy = layer.backward(dy)
        finally:
            first.needs_input_grad = saved
        return dy

    def __repr__(self) -> str:
        lines = [f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"


# ----------------------------------------------------------------------------------------------
# Initialisation
# ----------------------------------------------------------------------------------------------


def fan_in_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or Conv (O, C, kh, kw) weight, as torch computes them."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def init_weight(
    shape: tuple[int, ...],
    scheme: str = "he",
    dtype: np.dtype | type = np.float32,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Draw a weight: ``he`` N(0, 2/fan_in) for ReLU nets; ``xavier`` U(±sqrt(6/(fan_in+fan_out)));
    ``torch`` torch's default U(±1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5))."""
    rng = rng or default_rng()
    fan_in, fan_out = fan_in_out(shape)
    if scheme == "he":
        w = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)
    elif scheme == "xavier":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-bound, bound, size=shape)
    elif scheme == "torch":
        bound = 1.0 / math.sqrt(fan_in)
        w = rng.uniform(-bound, bound, size=shape)
    else:
        raise CnnlabError(f"unknown init scheme {scheme!r}; use 'he', 'xavier' or 'torch'")
    return w.astype(dtype)


# ----------------------------------------------------------------------------------------------
# Save / load
# ----------------------------------------------------------------------------------------------


def save_npz(model: Module, path: str | Path, meta: dict | None = None) -> Path:
    """Write the state dict to ``path`` (.npz, no pickle); ``meta`` (JSON-able) is stored alongside."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta or {}).encode(), dtype=np.uint8)
    with atomic_write(path) as f:  # a kill mid-save leaves the previous weights whole
        np.savez(f, **arrays)
    return path


def load_npz(model: Module, path: str | Path) -> dict:
    """Load weights saved by :func:`save_npz` into ``model``; returns the stored metadata."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"weights file {path} not found; pass the model.npz written by 'cnnlab scratch train'")
    with np.load(path, allow_pickle=False) as f:
        state = {k: f[k] for k in f.files if k != "__meta__"}
        meta = json.loads(f["__meta__"].tobytes().decode()) if "__meta__" in f.files else {}
    model.load_state_dict(state)
    return meta
