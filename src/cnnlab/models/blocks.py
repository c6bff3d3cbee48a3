"""Building blocks shared by the model families and by YAML-described custom nets.

Seed 002 ("Advanced CNN Concepts") introduces the layers every modern CNN is assembled from: 1x1
convolutions that mix channels cheaply, dilated convolutions that widen the receptive field without
adding weights, depthwise separable convolutions (MobileNet, Xception), strided convolutions that
learn to downsample instead of pooling, transposed convolutions that upsample; plus a choice of
activation, pooling and normalisation. They live here once, behind small registries, so that the
families, the custom-net builder (``cnnlab.models.custom``) and the teaching pages use the same
code and the same names (``make_activation("gelu")``, ``make_norm("group", 64)``, ...).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.registry import Registry

ACTIVATIONS: Registry = Registry("activation")
NORMS: Registry = Registry("normalisation")
POOLS: Registry = Registry("pooling")

# ---------------------------------------------------------------- activations (name -> nn.Module factory)

ACTIVATIONS.register("relu")(lambda inplace=False: nn.ReLU(inplace=inplace))
ACTIVATIONS.register("leaky_relu")(
    lambda negative_slope=0.01, inplace=False: nn.LeakyReLU(negative_slope, inplace=inplace)
)
ACTIVATIONS.register("sigmoid")(lambda: nn.Sigmoid())
ACTIVATIONS.register("tanh")(lambda: nn.Tanh())
ACTIVATIONS.register("silu")(lambda inplace=False: nn.SiLU(inplace=inplace))
ACTIVATIONS.register("swish")(lambda inplace=False: nn.SiLU(inplace=inplace))  # Swish with beta=1 is SiLU
ACTIVATIONS.register("gelu")(lambda approximate="none": nn.GELU(approximate=approximate))
ACTIVATIONS.register("relu6")(lambda inplace=False: nn.ReLU6(inplace=inplace))  # MobileNet V2
ACTIVATIONS.register("hardswish")(lambda inplace=False: nn.Hardswish(inplace=inplace))
ACTIVATIONS.register("identity")(lambda: nn.Identity())


def make_activation(name: str | None, **kw: Any) -> nn.Module:
    """Build an activation by name (``None`` or ``"identity"`` gives ``nn.Identity``)."""
    return nn.Identity() if name is None else ACTIVATIONS.create(name, **kw)


# ---------------------------------------------------------------- normalisation over (B, C, H, W) or (B, F)


@NORMS.register("batch")
def _batch_norm(channels: int, dim: int = 2) -> nn.Module:
    return nn.BatchNorm2d(channels) if dim == 2 else nn.BatchNorm1d(channels)


@NORMS.register("layer")
def _layer_norm(channels: int, dim: int = 2) -> nn.Module:
    # For feature maps, "layer norm" normalises each sample over (C, H, W): GroupNorm with one group
    # does exactly that and, unlike nn.LayerNorm, does not need H and W at build time.
    return nn.GroupNorm(1, channels) if dim == 2 else nn.LayerNorm(channels)


@NORMS.register("group")
def _group_norm(channels: int, dim: int = 2, groups: int = 32) -> nn.Module:
    groups = min(groups, channels)
    if channels % groups:
        raise CnnlabError(f"group norm: {groups} groups must divide the {channels} channels; pick another 'groups'.")
    return nn.GroupNorm(groups, channels)


@NORMS.register("instance")
def _instance_norm(channels: int, dim: int = 2) -> nn.Module:
    if dim != 2:
        raise CnnlabError("instance norm needs feature maps (B, C, H, W); use batch or layer norm after flatten.")
    return nn.InstanceNorm2d(channels, affine=True)


NORMS.register("none")(lambda channels, dim=2: nn.Identity())


def make_norm(name: str | None, channels: int, dim: int = 2, **kw: Any) -> nn.Module:
    """Normalisation layer by name: ``batch``, ``layer``, ``group`` (``groups=32``), ``instance``, ``none``.

    ``dim=2`` for feature maps (B, C, H, W), ``dim=1`` for flat features (B, F).
    """
    return nn.Identity() if name is None else NORMS.create(name, channels=channels, dim=dim, **kw)


# ---------------------------------------------------------------- pooling


POOLS.register("max")(lambda k=2, s=None, p=0: nn.MaxPool2d(k, s, p))
POOLS.register("avg")(lambda k=2, s=None, p=0: nn.AvgPool2d(k, s, p))
POOLS.register("global_avg")(lambda: nn.AdaptiveAvgPool2d(1))  # (B, C, H, W) -> (B, C, 1, 1)
POOLS.register("global_max")(lambda: nn.AdaptiveMaxPool2d(1))


def make_pool(name: str, **kw: Any) -> nn.Module:
    """Pooling layer by name: ``max``/``avg`` (``k``, ``s`` = k, ``p``) or ``global_avg``/``global_max``."""
    return POOLS.create(name, **kw)


# ---------------------------------------------------------------- convolutions


def conv1x1(c_in: int, c_out: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    """Pointwise conv: mixes channels at each pixel, ``c_in*c_out`` weights (seed 002: 256->64 is 16,384)."""
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=bias)


def conv3x3(
    c_in: int, c_out: int, stride: int = 1, groups: int = 1, dilation: int = 1, bias: bool = False
) -> nn.Conv2d:
    """3x3 conv with 'same' padding at stride 1 (padding = dilation keeps H, W)."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, groups=groups, dilation=dilation, bias=bias)


def dilated_conv(c_in: int, c_out: int, kernel: int = 3, dilation: int = 2, bias: bool = False) -> nn.Conv2d:
    """Dilated (atrous) conv: a 3x3 kernel with d=2 covers 5x5 with 9 weights; size-preserving padding."""
    return nn.Conv2d(c_in, c_out, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation, bias=bias)


def strided_conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 2, bias: bool = False) -> nn.Conv2d:
    """Learned downsampling: halves H and W at stride 2 (the alternative to max pooling in seed 002)."""
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=(kernel - 1) // 2, bias=bias)


def transposed_conv(c_in: int, c_out: int, kernel: int = 2, stride: int = 2, bias: bool = True) -> nn.ConvTranspose2d:
    """Learned upsampling: with kernel = stride = 2 it doubles H and W, ``out = (n-1)s + k``."""
    return nn.ConvTranspose2d(c_in, c_out, kernel, stride=stride, bias=bias)


class ConvNormAct(nn.Sequential):
    """Conv -> norm -> activation, the unit most CNNs repeat. (B, c_in, H, W) -> (B, c_out, H/s, W/s)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        dilation: int = 1,
        norm: str | None = "batch",
        act: str | None = "relu",
    ):
        padding = dilation * (kernel - 1) // 2 if padding is None else padding
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation=dilation, groups=groups, bias=norm is None),
            make_norm(norm, c_out),
            make_activation(act),
        )


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise kxk conv (one filter per channel) then pointwise 1x1 conv, each with norm + activation.

    Weights: ``c_in k^2 + c_in c_out`` instead of ``c_in c_out k^2``, i.e. ``1 / (1/c_out + 1/k^2)`` times
    fewer (7.9x for 3x3 and 64 outputs, approaching 9x): the factorisation of MobileNet V1 (Howard et al. 2017).
    """

    def __init__(
        self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, norm: str | None = "batch", act: str = "relu"
    ):
        super().__init__(
            ConvNormAct(c_in, c_in, kernel, stride, groups=c_in, norm=norm, act=act),  # depthwise
            ConvNormAct(c_in, c_out, 1, norm=norm, act=act),  # pointwise
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): reweight channels by a gate computed from their means.

    (B, C, H, W) -> global average -> (B, C) -> FC C->C/r -> act -> FC C/r->C -> sigmoid -> scale x.
    The FCs are 1x1 convs so the module works on (B, C, 1, 1) without reshaping.
    """

    def __init__(self, channels: int, squeeze: int | None = None, reduction: int = 16, act: str = "relu"):
        super().__init__()
        squeeze = squeeze or max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = make_activation(act)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))  # (B, C, 1, 1)
        return x * w
