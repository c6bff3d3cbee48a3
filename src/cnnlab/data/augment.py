"""Batch augmentations for the in-memory fast path (and, after collation, for image folders).

Each augmentation is a function ``(x, gen) -> x`` on a float batch in [0, 1] of shape (B, C, H, W).
Geometric and photometric ops are vectorised over the batch (one gather, one grid_sample, one
grouped convolution — no per-image Python or PIL work). The learned/randomised policies of
torchvision.transforms.v2 (RandAugment, TrivialAugmentWide, AutoAugment, AugMix) have no batch
form; they run per image on uint8 tensors. Randomness comes only from ``gen`` (a torch.Generator;
the v2 policies get a seed drawn from it), so a run is reproducible and resumable from its state.

``data.augment`` is a preset name or a ``+``-joined list of ops with optional arguments, e.g.
``crop(pad=4)+hflip+erase(p=0.5)`` or ``randaugment(num_ops=2, magnitude=9)+hflip``. ``seed`` is
seed 000's CIFAR recipe: random crop with 4 px padding, horizontal flip (p=0.5), rotation within
+/-15 degrees, colour jitter 0.2 (brightness, contrast, saturation). MixUp (Zhang et al. 2018) and
CutMix (Yun et al. 2019) mix pairs of images and their labels; they act on (x, y) batches through
:class:`BatchMixer` (``data.mixup``, ``data.cutmix``), and the loop mixes the losses. ``altflip``
(airbench94's alternating flips) also needs to know which images the batch holds and the epoch: the
loaders hand that over as a :class:`BatchPosition`.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError
from cnnlab.readers import load_yaml
from cnnlab.registry import Registry

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTATIONS: Registry = Registry("augmentation")


@dataclass(frozen=True)
class BatchPosition:
    """Where a training batch comes from, for augmentations that depend on more than the pixels.

    An augmentation marked ``uses_position`` is called ``fn(x, gen, where)`` with one of these (the
    loaders pass it through :func:`augment_batch`); without one (a preview) it behaves as in epoch 0
    with the images numbered 0..B-1.
    """

    index: torch.Tensor  # (B,) the images' positions in the training split
    epoch: int  # 0-based epoch of the run (the Trainer sets it on the loader)
    seed: int  # the data generator's seed: fixes per-image choices for the whole run
    size: int  # images in the training split


def augment_batch(fn: Augment, x: torch.Tensor, gen: torch.Generator, where: BatchPosition) -> torch.Tensor:
    """``fn(x, gen)``, or ``fn(x, gen, where)`` for an augmentation that asks for the batch's position."""
    return fn(x, gen, where) if getattr(fn, "uses_position", False) else fn(x, gen)


def _uniform(gen: torch.Generator, n: int, low: float, high: float, device) -> torch.Tensor:
    # Draw on the generator's device, then move: keeps CPU and GPU runs on the same random stream.
    return (torch.rand(n, generator=gen) * (high - low) + low).to(device)


def hflip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = _uniform(gen, x.shape[0], 0, 1, x.device) < p  # (B,)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def _pad(x: torch.Tensor, pad: int, padding: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H+2p, W+2p), filled with zeros (black) or the border mirrored (``reflect``)."""
    if padding not in ("zeros", "reflect"):
        raise CnnlabError(f"padding must be zeros or reflect, not {padding!r}")
    if padding == "reflect" and pad >= min(x.shape[-2:]):
        raise CnnlabError(f"reflect padding of {pad} px needs images larger than {pad} px")
    return F.pad(x, (pad, pad, pad, pad), mode="reflect" if padding == "reflect" else "constant")


def random_crop(x: torch.Tensor, gen: torch.Generator, pad: int = 4, padding: str = "zeros") -> torch.Tensor:
    """Pad by ``pad`` (``zeros`` or ``reflect``) and cut a random HxW window per image (a random translation)."""
    b, c, h, w = x.shape
    padded = _pad(x, pad, padding)  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    return _windows(padded, dy, dx, h, w)


def _windows(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The H x W window at row ``dy[i]``, column ``dx[i]`` of each padded image i: (B, C, H, W).

    A strided view holds every window of every image without copying, (B, rows, cols, C, H, W);
    indexing it by (image, dy, dx) copies only the chosen ones: one indexed copy where a row gather
    and a column gather took two (half the time for MNIST batches of 128 on a CPU)."""
    padded = padded.contiguous()
    b, c, hp, wp = padded.shape
    sb, sc, sh, sw = padded.stride()
    every = padded.as_strided((b, hp - h + 1, wp - w + 1, c, h, w), (sb, sh, sw, sc, sh, sw))
    return every[torch.arange(b, device=padded.device), dy, dx]


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


def crop_flip(
    x: torch.Tensor, gen: torch.Generator, pad: int = 4, p: float = 0.5, padding: str = "zeros"
) -> torch.Tensor:
    """Random crop (``pad``, ``zeros`` or ``reflect`` padding) and horizontal flip with probability ``p`` in one gather.

    Same distribution as ``random_crop`` followed by ``hflip`` (the flip is folded into the column
    index), at the cost of a single crop: the cheapest form of the standard CIFAR pair. ``reflect``
    mirrors the border instead of adding black bars (airbench's choice for its 2 px translations).
    """
    b, c, h, w = x.shape
    padded = _pad(x, pad, padding)  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    flip = _uniform(gen, b, 0, 1, x.device) < p
    ar_h, ar_w = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    rows = (dy[:, None] + ar_h[None]).view(b, 1, h, 1).expand(b, c, h, w + 2 * pad)
    col_off = torch.where(flip[:, None], (w - 1 - ar_w)[None], ar_w[None])  # (B, W): reversed when flipped
    cols = (dx[:, None] + col_off).view(b, 1, 1, w).expand(b, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def alternating_flips() -> Augment:
    """Alternating flips (airbench94, Jordan 2024): each image is mirrored in every other epoch.

    In epoch 0 a random half of the images is mirrored (a per-image coin fixed for the run by the data
    seed); in every later epoch each image shows the side it did not show in the epoch before. Over
    any two consecutive epochs the network sees both sides of every image, where independent coins
    show about a quarter of the images on the same side twice running; the records credit this with
    reaching the same accuracy in fewer epochs. The coins are drawn afresh only when the seed or the
    split's size changes.
    """
    coins: dict[tuple[int, int], torch.Tensor] = {}

    def run(x: torch.Tensor, gen: torch.Generator, where: BatchPosition | None = None) -> torch.Tensor:
        if where is None:
            where = BatchPosition(torch.arange(len(x)), 0, gen.initial_seed(), len(x))
        key = (where.seed, where.size)
        if key not in coins:
            coins.clear()  # one run's coins at a time
            first = torch.Generator().manual_seed(where.seed % 2**63)
            coins[key] = torch.rand(where.size, generator=first) < 0.5  # (size,): mirrored in epoch 0
        flip = coins[key][where.index.cpu()].to(x.device) ^ bool(where.epoch % 2)  # (B,)
        return torch.where(flip[:, None, None, None], x.flip(3), x)

    run.uses_position = True
    return run


def vflip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = _uniform(gen, x.shape[0], 0, 1, x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(2), x)


def affine(
    x: torch.Tensor,
    gen: torch.Generator,
    degrees: float = 0.0,
    translate: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
    shear: float = 0.0,
) -> torch.Tensor:
    """Random rotation (+/-degrees), translation (+/-translate of the side), zoom and x-shear per image,
    composed into one affine matrix and applied with one bilinear ``grid_sample`` (zero fill)."""
    b, dev = x.shape[0], x.device
    rad = math.pi / 180.0
    theta = _uniform(gen, b, -degrees, degrees, dev) * rad
    sh = _uniform(gen, b, -shear, shear, dev) * rad
    s = _uniform(gen, b, scale[0], scale[1], dev)
    tx = _uniform(gen, b, -translate, translate, dev) * 2  # normalised coordinates span 2
    ty = _uniform(gen, b, -translate, translate, dev) * 2
    cos, sin, tan = torch.cos(theta), torch.sin(theta), torch.tan(sh)
    # Output->input map: inverse zoom, rotation, shear; grid_sample samples the input at A @ [u, v, 1].
    a11, a12 = cos / s, (cos * tan - sin) / s
    a21, a22 = sin / s, (sin * tan + cos) / s
    mat = torch.stack([torch.stack([a11, a12, -tx], 1), torch.stack([a21, a22, -ty], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(mat.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def resized_crop(
    x: torch.Tensor, gen: torch.Generator, scale: tuple[float, float] = (0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> torch.Tensor:
    """RandomResizedCrop at the input size: a box of random area share and aspect ratio, resized back."""
    b, dev = x.shape[0], x.device
    area = _uniform(gen, b, scale[0], scale[1], dev)
    logr = _uniform(gen, b, math.log(ratio[0]), math.log(ratio[1]), dev)
    w = torch.sqrt(area * logr.exp()).clamp(max=1.0)  # box side as a share of the image side
    h = torch.sqrt(area / logr.exp()).clamp(max=1.0)
    cx = (_uniform(gen, b, 0, 1, dev) * 2 - 1) * (1 - w)  # centre keeps the box inside the image
    cy = (_uniform(gen, b, 0, 1, dev) * 2 - 1) * (1 - h)
    zero = torch.zeros_like(w)
    mat = torch.stack([torch.stack([w, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(mat.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def jitter(
    x: torch.Tensor,
    gen: torch.Generator,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 0.0,
) -> torch.Tensor:
    """Colour jitter with separate strengths; hue turns the chroma plane of YIQ by up to +/-hue*360 degrees
    (a vectorised stand-in for torchvision's HSV hue shift)."""
    x = color_jitter_parts(x, gen, brightness, contrast, saturation)
    if hue and x.shape[1] == 3:
        b = x.shape[0]
        ang = _uniform(gen, b, -hue, hue, x.device) * 2 * math.pi
        to_yiq = torch.tensor(
            [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=x.device, dtype=x.dtype
        )
        yiq = torch.einsum("ij,bjhw->bihw", to_yiq, x)
        cos, sin = torch.cos(ang).view(b, 1, 1), torch.sin(ang).view(b, 1, 1)
        i, q = yiq[:, 1], yiq[:, 2]
        yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], 1)
        x = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(to_yiq), yiq).clamp(0, 1)
    return x


def color_jitter_parts(x, gen, brightness: float, contrast: float, saturation: float) -> torch.Tensor:
    b = x.shape[0]
    shape = (b, 1, 1, 1)
    x = (x * _uniform(gen, b, 1 - brightness, 1 + brightness, x.device).view(shape)).clamp(0, 1)
    mean = _grayscale(x).mean((2, 3), keepdim=True)
    x = ((x - mean) * _uniform(gen, b, 1 - contrast, 1 + contrast, x.device).view(shape) + mean).clamp(0, 1)
    sat = _uniform(gen, b, 1 - saturation, 1 + saturation, x.device).view(shape)
    if x.shape[1] == 3:
        gray = _grayscale(x)
        x = ((x - gray) * sat + gray).clamp(0, 1)
    return x


def _boxes(gen, b, h, w, dev, scale, ratio):
    """Random boxes (y0, y1, x0, x1) per image with area share in ``scale`` and aspect in ``ratio``."""
    area = _uniform(gen, b, scale[0], scale[1], dev) * h * w
    r = torch.exp(_uniform(gen, b, math.log(ratio[0]), math.log(ratio[1]), dev))
    bh = torch.sqrt(area / r).round().clamp(1, h)
    bw = torch.sqrt(area * r).round().clamp(1, w)
    y0 = (_uniform(gen, b, 0, 1, dev) * (h - bh + 1)).floor()
    x0 = (_uniform(gen, b, 0, 1, dev) * (w - bw + 1)).floor()
    return y0, y0 + bh, x0, x0 + bw


def _box_mask(y0, y1, x0, x1, h, w, dev) -> torch.Tensor:
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = (ys >= y0.view(-1, 1, 1)) & (ys < y1.view(-1, 1, 1)) & (xs >= x0.view(-1, 1, 1)) & (xs < x1.view(-1, 1, 1))
    return inside[:, None]  # (B, 1, H, W)


def erase(
    x: torch.Tensor, gen: torch.Generator, p: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value: float = 0.0
) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020): with probability p, one box per image is set to ``value``."""
    b, _, h, w = x.shape
    box = _boxes(gen, b, h, w, x.device, scale, ratio)
    use = (_uniform(gen, b, 0, 1, x.device) < p).view(b, 1, 1, 1)
    return torch.where(_box_mask(*box, h, w, x.device) & use, torch.full_like(x, value), x)


def cutout(x: torch.Tensor, gen: torch.Generator, size: int = 8, p: float = 1.0) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017): a size x size square (clipped at the border) set to 0."""
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=gen).to(x.device)
    cx = torch.randint(0, w, (b,), generator=gen).to(x.device)
    use = (_uniform(gen, b, 0, 1, x.device) < p).view(b, 1, 1, 1)
    mask = _box_mask(cy - size // 2, cy - size // 2 + size, cx - size // 2, cx - size // 2 + size, h, w, x.device)
    return x.masked_fill(mask & use, 0.0)


def noise(x: torch.Tensor, gen: torch.Generator, std: float = 0.05) -> torch.Tensor:
    """Additive Gaussian noise N(0, std^2) on [0, 1] pixels, clipped back to [0, 1]."""
    eps = torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    return (x + std * eps).clamp(0, 1)


def blur(x: torch.Tensor, gen: torch.Generator, sigma=(0.1, 2.0), kernel: int = 5, p: float = 0.5) -> torch.Tensor:
    """Gaussian blur with a random sigma per image (applied with probability p): one separable grouped conv."""
    b, c, h, w = x.shape
    s = _uniform(gen, b, sigma[0], sigma[1], x.device)
    s = torch.where(_uniform(gen, b, 0, 1, x.device) < p, s, torch.full_like(s, 1e-3))  # ~identity kernel
    r = torch.arange(kernel, device=x.device, dtype=x.dtype) - (kernel - 1) / 2
    k = torch.exp(-(r[None] ** 2) / (2 * s[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K)
    y = x.reshape(1, b * c, h, w)
    r = kernel // 2
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k.view(b * c, 1, 1, kernel), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(b * c, 1, kernel, 1), groups=b * c)
    return y.view(b, c, h, w)


def v2_policy(make: Callable[[], Callable]) -> Augment:
    """Run a torchvision.transforms.v2 policy per image on uint8, seeded from ``gen`` (reproducible)."""
    policy = make()

    def run(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        u8 = (x * 255).round_().to(torch.uint8).cpu()  # (B, C, H, W) uint8
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = torch.stack([policy(img) for img in u8])
        return out.to(x.device).float().div_(255.0)

    run.global_rng = True  # touches torch's global RNG: must run on the training thread (no prefetch)
    return run


def compose(*fns: Augment) -> Augment:
    def run(x: torch.Tensor, gen: torch.Generator, where: BatchPosition | None = None) -> torch.Tensor:
        for fn in fns:
            x = fn(x, gen, where) if getattr(fn, "uses_position", False) else fn(x, gen)
        return x

    run.global_rng = any(getattr(fn, "global_rng", False) for fn in fns)
    run.uses_position = any(getattr(fn, "uses_position", False) for fn in fns)
    return run


def _bind(fn, **defaults):
    """Register-friendly factory: ``factory(**params)`` returns ``lambda x, g: fn(x, g, **params)``."""

    def factory(**params) -> Augment:
        kw = {**defaults, **params}
        inspect.signature(fn).bind(None, None, **kw)  # unknown argument names fail here, not mid-training
        return lambda x, g: fn(x, g, **kw)

    factory.__doc__ = fn.__doc__
    return factory


# ---- single ops (usable alone or joined with "+") ------------------------------------------------
AUGMENTATIONS.register("hflip")(_bind(hflip))
AUGMENTATIONS.register("altflip")(alternating_flips)
AUGMENTATIONS.register("vflip")(_bind(vflip))
AUGMENTATIONS.register("random_crop")(_bind(random_crop))
AUGMENTATIONS.register("crop_flip")(_bind(crop_flip))
AUGMENTATIONS.register("rotate")(_bind(affine, degrees=15.0))
AUGMENTATIONS.register("translate")(_bind(affine, translate=0.1))
AUGMENTATIONS.register("shear")(_bind(affine, shear=10.0))
AUGMENTATIONS.register("affine")(_bind(affine, degrees=10.0, translate=0.1, scale=(0.9, 1.1), shear=5.0))
AUGMENTATIONS.register("resized_crop")(_bind(resized_crop))
AUGMENTATIONS.register("jitter")(_bind(jitter))
AUGMENTATIONS.register("erase")(_bind(erase))
AUGMENTATIONS.register("cutout")(_bind(cutout))
AUGMENTATIONS.register("noise")(_bind(noise))
AUGMENTATIONS.register("blur")(_bind(blur))


@AUGMENTATIONS.register("randaugment")
def randaugment(num_ops: int = 2, magnitude: int = 9) -> Augment:
    """RandAugment (Cubuk et al. 2020): num_ops random ops at one magnitude (torchvision v2, per image)."""
    from torchvision.transforms import v2

    return v2_policy(lambda: v2.RandAugment(num_ops=num_ops, magnitude=magnitude))


@AUGMENTATIONS.register("trivialaugment")
def trivialaugment() -> Augment:
    """TrivialAugmentWide (Müller & Hutter 2021): one random op at a random magnitude (v2, per image)."""
    from torchvision.transforms import v2

    return v2_policy(v2.TrivialAugmentWide)


@AUGMENTATIONS.register("autoaugment")
def autoaugment(policy: str = "cifar10") -> Augment:
    """AutoAugment (Cubuk et al. 2019) with the learned cifar10 / imagenet / svhn policy (v2, per image)."""
    from torchvision.transforms import v2

    policies = {p.name.lower(): p for p in v2.AutoAugmentPolicy}
    return v2_policy(lambda: v2.AutoAugment(policies[policy.lower()]))


@AUGMENTATIONS.register("augmix")
def augmix(severity: int = 3, width: int = 3) -> Augment:
    """AugMix (Hendrycks et al. 2020): mixtures of augmentation chains (v2, per image)."""
    from torchvision.transforms import v2

    return v2_policy(lambda: v2.AugMix(severity=severity, mixture_width=width))


# ---- presets ---------------------------------------------------------------------------------------
@AUGMENTATIONS.register("none")
def none_preset() -> Augment | None:
    """No augmentation."""
    return None


@AUGMENTATIONS.register("flip")
def flip_preset() -> Augment:
    """Horizontal flip with p=0.5."""
    return hflip


@AUGMENTATIONS.register("crop")
def crop_preset(pad: int = 2) -> Augment:
    """Random translation by up to 2 px (pad-and-crop): suits digits, where flips would change labels."""
    return lambda x, g: random_crop(x, g, pad=pad)


@AUGMENTATIONS.register("crop-flip")
def crop_flip_preset(pad: int = 4) -> Augment:
    """Random crop with 4 px padding and horizontal flip: the standard CIFAR pair (one gather)."""
    return lambda x, g: crop_flip(x, g, pad=pad)


@AUGMENTATIONS.register("seed")
def seed_preset() -> Augment:
    """Seed 000: crop (pad 4), horizontal flip, rotation +/-15 degrees, colour jitter 0.2."""
    return compose(lambda x, g: crop_flip(x, g, pad=4), rotate, color_jitter)


_SPEC = re.compile(r"^\s*([\w-]+)\s*(?:\((.*)\))?\s*$")


def parse_spec(spec: str) -> list[tuple[str, dict]]:
    """``"crop(pad=4)+hflip"`` -> [("crop", {"pad": 4}), ("hflip", {})]; values are YAML scalars/lists."""
    out = []
    for part in spec.split("+"):
        m = _SPEC.match(part)
        if not m:
            raise CnnlabError(f"cannot read augmentation {part!r} in {spec!r}; write name or name(key=value, ...)")
        kwargs = {}
        if m.group(2):
            try:
                kwargs = load_yaml("{" + m.group(2).replace("=", ": ") + "}", f"augmentation {part!r}") or {}
            except CnnlabError as exc:
                hint = f"cannot read the arguments of augmentation {part!r}; use key=value pairs"
                raise CnnlabError(f"{hint} ({exc})") from None
            if not isinstance(kwargs, dict):
                raise CnnlabError(f"cannot read the arguments of augmentation {part!r}; use key=value pairs")
        out.append((m.group(1), {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}))
    return out


def build_augment(name: str, channels: int) -> Augment | None:
    """Resolve a preset or a ``+``-joined op list; ``auto`` picks ``seed`` for colour images, ``none`` for grayscale."""
    if name == "auto":
        name = "seed" if channels == 3 else "none"
    fns = []
    for op, kwargs in parse_spec(name):
        try:
            fn = AUGMENTATIONS.create(op, **kwargs)
        except TypeError as exc:
            raise CnnlabError(f"augmentation {op!r}: {exc}") from None
        if fn is not None:
            fns.append(fn)
    if not fns:
        return None
    return fns[0] if len(fns) == 1 else compose(*fns)


class BatchMixer:
    """MixUp / CutMix on a batch: returns (mixed x, partner labels y_b, lam); loss = lam*L(y) + (1-lam)*L(y_b).

    lam ~ Beta(alpha, alpha) once per batch; each image is paired with a random other image of the batch.
    With both enabled, each batch uses one of the two at random (as timm does).
    """

    def __init__(self, mixup: float, cutmix: float, generator: torch.Generator):
        self.mixup, self.cutmix, self.generator = mixup, cutmix, generator

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        g = self.generator
        seed = int(torch.randint(0, 2**62, (1,), generator=g))
        rng = np.random.default_rng(seed)
        use_cutmix = self.cutmix > 0 and (self.mixup <= 0 or rng.random() < 0.5)
        alpha = self.cutmix if use_cutmix else self.mixup
        lam = float(rng.beta(alpha, alpha))
        perm = torch.randperm(x.shape[0], generator=g).to(x.device)
        if not use_cutmix:
            return lam * x + (1 - lam) * x[perm], y[perm], lam
        h, w = x.shape[-2:]
        bh, bw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = max(cy - bh // 2, 0), min(cy + bh // 2, h)
        x0, x1 = max(cx - bw // 2, 0), min(cx + bw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the share actually kept after clipping at the border
        return x, y[perm], lam


def build_mixer(mixup: float, cutmix: float, generator: torch.Generator) -> BatchMixer | None:
    """A BatchMixer when either alpha is positive, else None."""
    if mixup < 0 or cutmix < 0:
        raise CnnlabError(f"data.mixup and data.cutmix are Beta alphas >= 0 (got {mixup}, {cutmix})")
    return BatchMixer(mixup, cutmix, generator) if (mixup > 0 or cutmix > 0) else None
