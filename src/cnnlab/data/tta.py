"""Test-time augmentation: views of a batch whose predictions are averaged.

``TTA.create(name)`` gives (weight, view) pairs, each view a function of a normalised (B, C, H, W)
batch; :func:`view_logits` runs a model on every view and returns the log of the weighted mean of
their softmax probabilities. Training's validation and test predictions (``train.tta``), ``cnnlab
evaluate`` and the run object's predictions all go through here, so a run is scored the same way
by every command.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cnnlab.registry import Registry

TTA: Registry = Registry("test-time augmentation")


def _shift(x: torch.Tensor, dy: int, dx: int, mode: str = "constant") -> torch.Tensor:
    # Translate by (dy, dx) pixels, filling with zeros (the mean colour of normalised inputs) or the
    # mirrored border (mode "reflect"): (B, C, H, W) -> same shape.
    h, w = x.shape[-2:]
    p = max(abs(dy), abs(dx))
    padded = F.pad(x, (p, p, p, p), mode=mode)
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


def _views(*fns: Callable) -> list[tuple[float, Callable]]:
    return [(1 / len(fns), f) for f in fns]  # equal weights


def _flip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(3)


# Each entry: (weight, view) pairs whose softmax probabilities are averaged with those weights.
TTA.register("none")(lambda: _views(lambda x: x))
TTA.register("flip")(lambda: _views(lambda x: x, _flip))
TTA.register("flip-translate")(
    lambda: _views(lambda x: x, _flip, lambda x: _shift(x, 2, 2), lambda x: _shift(x, -2, -2))
)


@TTA.register("flip-translate1")
def _flip_translate1() -> list[tuple[float, Callable]]:
    """airbench's test-time views: the image and its mirror (half the weight), and both of them moved
    1 px up-left and 1 px down-right with the border reflected (the other half)."""
    views = []
    for weight, d in ((1 / 4, 0), (1 / 8, 1), (1 / 8, -1)):
        move = (lambda x: x) if d == 0 else (lambda x, d=d: _shift(x, d, d, "reflect"))
        views += [(weight, move), (weight, lambda x, move=move: move(x).flip(3))]
    return views


def view_logits(model: Callable, x: torch.Tensor, views: list[tuple[float, Callable]]) -> torch.Tensor:
    """float32 logits of one batch; with several views (``TTA.create(name)``), the log of their
    weighted mean softmax, which argmax and cross-entropy read as they read logits."""
    if len(views) == 1:
        return main_logits(model(x))
    probs = sum(w * F.softmax(main_logits(model(v(x))), 1) for w, v in views)
    return probs.clamp_min(1e-12).log()


def main_logits(out) -> torch.Tensor:
    """A model's main output as float32: the tensor itself, or the first of (logits, aux_logits...)."""
    return (out if isinstance(out, torch.Tensor) else tuple(out)[0]).float()
