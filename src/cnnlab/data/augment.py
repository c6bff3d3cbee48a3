"""Batch augmentations for the in-memory fast path (and, after collation, for image folders).

Each augmentation is a function ``(x, gen) -> x`` on a float batch in [0, 1] of shape (B, C, H, W),
vectorised over the batch: no per-image Python or PIL work. Randomness comes only from ``gen``
(a torch.Generator), so a run is reproducible and resumable from the generator state.

Presets combine them. ``seed`` is seed 000's CIFAR recipe: random crop with 4 px padding,
horizontal flip (p=0.5), rotation within +/-15 degrees, colour jitter 0.2 (brightness, contrast,
saturation).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cnnlab.registry import Registry

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTATIONS: Registry = Registry("augmentation preset")


def _uniform(gen: torch.Generator, n: int, low: float, high: float, device) -> torch.Tensor:
    # Draw on the generator's device, then move: keeps CPU and GPU runs on the same random stream.
    return (torch.rand(n, generator=gen) * (high - low) + low).to(device)


def hflip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = _uniform(gen, x.shape[0], 0, 1, x.device) < p  # (B,)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_crop(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Zero-pad by ``pad`` and cut a random HxW window per image (a random translation)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None]).view(b, 1, h, 1).expand(b, c, h, w + 2 * pad)
    out = padded.gather(2, rows)  # (B, C, H, W+2p)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None]).view(b, 1, 1, w).expand(b, c, h, w)
    return out.gather(3, cols)


def rotate(x: torch.Tensor, gen: torch.Generator, degrees: float = 15.0) -> torch.Tensor:
    """Rotate each image by a random angle in [-degrees, degrees] about its centre (bilinear, zero fill)."""
    b = x.shape[0]
    theta = _uniform(gen, b, -degrees, degrees, x.device) * (math.pi / 180.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    affine = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(affine.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def color_jitter(x: torch.Tensor, gen: torch.Generator, strength: float = 0.2) -> torch.Tensor:
    """Brightness, contrast and saturation each scaled by a factor in [1-s, 1+s] (torchvision's definitions)."""
    b = x.shape[0]
    bright = _uniform(gen, b, 1 - strength, 1 + strength, x.device).view(b, 1, 1, 1)
    contrast = _uniform(gen, b, 1 - strength, 1 + strength, x.device).view(b, 1, 1, 1)
    sat = _uniform(gen, b, 1 - strength, 1 + strength, x.device).view(b, 1, 1, 1)
    x = (x * bright).clamp(0, 1)
    gray = _grayscale(x)  # (B, 1, H, W)
    x = ((x - gray.mean((2, 3), keepdim=True)) * contrast + gray.mean((2, 3), keepdim=True)).clamp(0, 1)
    if x.shape[1] == 3:
        gray = _grayscale(x)
        x = ((x - gray) * sat + gray).clamp(0, 1)
    return x


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def compose(*fns: Augment) -> Augment:
    def run(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for fn in fns:
            x = fn(x, gen)
        return x

    return run


@AUGMENTATIONS.register("none")
def none_preset() -> Augment | None:
    """No augmentation."""
    return None


@AUGMENTATIONS.register("flip")
def flip_preset() -> Augment:
    """Horizontal flip with p=0.5."""
    return hflip


@AUGMENTATIONS.register("crop")
def crop_preset() -> Augment:
    """Random translation by up to 2 px (pad-and-crop): suits digits, where flips would change labels."""
    return lambda x, g: random_crop(x, g, pad=2)


@AUGMENTATIONS.register("crop-flip")
def crop_flip_preset() -> Augment:
    """Random crop with 4 px padding and horizontal flip: the standard CIFAR pair."""
    return compose(lambda x, g: random_crop(x, g, pad=4), hflip)


@AUGMENTATIONS.register("seed")
def seed_preset() -> Augment:
    """Seed 000: crop (pad 4), horizontal flip, rotation +/-15 degrees, colour jitter 0.2."""
    return compose(lambda x, g: random_crop(x, g, pad=4), hflip, rotate, color_jitter)


def build_augment(name: str, channels: int) -> Augment | None:
    """Resolve a preset name; ``auto`` picks ``seed`` for colour images and ``none`` for grayscale."""
    if name == "auto":
        name = "seed" if channels == 3 else "none"
    return AUGMENTATIONS.create(name)
