"""MobileNet V1 (Howard et al. 2017) and V2 (Sandler et al. 2018): depthwise separable networks.

Seed 002's "MobileNet" entry and its depthwise separable convolution: a per-channel 3x3 conv followed
by a 1x1 conv costs ``C k^2 + C C'`` weights instead of ``C C' k^2``. V1 stacks 13 such blocks after a
plain 3x3 stem. V2 uses inverted residual blocks: 1x1 expansion (x6) -> ReLU6 -> 3x3 depthwise ->
ReLU6 -> linear 1x1 projection, with a residual connection when the shape is kept. The
``InvertedResidual`` below also serves EfficientNet (``cnnlab.models.efficientnet``), which adds
squeeze-excitation and SiLU.

``mobilenet_v1`` (own, ImageNet-shaped: 4,231,976 parameters at 1000 classes, as in the reference
Keras implementation) and ``mobilenet_v2`` (torchvision, 3,504,872) take 224 px inputs;
``mobilenet_v1_cifar`` and ``mobilenet_v2_cifar`` use a stride-1 stem (and, in V2, a stride-1
second stage) so a 32 px input still ends at 4x4 (2x2 for V1) before global pooling. Building the
own V2 with the ImageNet strides gives torchvision's count exactly (checked in the tests).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnlab.models._common import register_torchvision, register_variant
from cnnlab.models.blocks import ConvNormAct, DepthwiseSeparableConv, SqueezeExcite

# ---------------------------------------------------------------- V1

# (output channels, stride) of the 13 depthwise separable blocks (Howard et al., table 1)
_V1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


class MobileNetV1(nn.Module):
    """3x3 stem (32) -> 13 depthwise separable blocks -> global average pool -> linear."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, stem_stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.stem = ConvNormAct(in_channels, 32, 3, stem_stride)
        blocks, c = [], 32
        for c_out, s in _V1_BLOCKS:
            blocks.append(DepthwiseSeparableConv(c, c_out, 3, s))
            c = c_out
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(self.stem(x)))))


# ---------------------------------------------------------------- inverted residual (V2, EfficientNet)


class InvertedResidual(nn.Module):
    """Expand 1x1 (x t) -> depthwise kxk (stride s) -> [SE] -> project 1x1 (no activation) [+ x].

    (B, c_in, H, W) -> (B, c_in t, H, W) -> (B, c_in t, H/s, W/s) -> (B, c_out, H/s, W/s).
    ``se_ratio`` sizes the SE bottleneck relative to ``c_in`` (EfficientNet uses 0.25).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int,
        expand: int,
        kernel: int = 3,
        act: str = "relu6",
        se_ratio: float = 0.0,
    ):
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvNormAct(c_in, hidden, 1, act=act))
        layers.append(ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se_ratio:
            layers.append(SqueezeExcite(hidden, squeeze=max(1, int(c_in * se_ratio)), act=act))
        layers.append(ConvNormAct(hidden, c_out, 1, act=None))  # linear bottleneck
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


# (expansion t, output channels c, repeats n, stride s) -- Sandler et al., table 2
_V2_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2)]
_V2_SETTING += [(6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(nn.Module):
    """3x3 stem (32) -> 17 inverted residual blocks -> 1x1 conv 1280 -> global average pool -> linear."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_stride: int = 1,
        second_stride: int = 1,
        dropout: float = 0.2,
    ):
        super().__init__()
        setting = [list(row) for row in _V2_SETTING]
        setting[1][3] = second_stride  # the CIFAR adaptation keeps 32 px for one more stage
        self.stem = ConvNormAct(in_channels, 32, 3, stem_stride, act="relu6")
        blocks, c = [], 32
        for t, c_out, n, s in setting:
            for i in range(n):
                blocks.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
                c = c_out
        blocks.append(ConvNormAct(c, 1280, 1, act="relu6"))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(self.stem(x)))))


def _mobilenet(cls: type[nn.Module], *, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, **kw):
    return cls(num_classes=num_classes, in_channels=in_channels, **kw)


register_variant(
    "mobilenet_v1_cifar",
    partial(_mobilenet, MobileNetV1, stem_stride=1),
    "MobileNet V1 for 28-32 px inputs (stride-1 stem, 13 depthwise separable blocks).",
)
register_variant(
    "mobilenet_v1",
    partial(_mobilenet, MobileNetV1, stem_stride=2),
    "MobileNet V1 (ImageNet-shaped, 224 px; own implementation, torchvision has none).",
    num_classes=1000,
    input_size=224,
)
register_variant(
    "mobilenet_v2_cifar",
    partial(_mobilenet, MobileNetV2, stem_stride=1, second_stride=1),
    "MobileNet V2 for 28-32 px inputs (stride-1 stem and second stage, inverted residuals).",
)
register_torchvision("mobilenet_v2", "torchvision MobileNet V2 (ImageNet-shaped, weights=None).")
