"""EfficientNet-B0 (Tan & Le 2019), small-input and ImageNet-shaped.

Seed 002's "EfficientNet" entry: a baseline found by architecture search (B0) made of MBConv blocks
(inverted residuals with squeeze-excitation and SiLU/Swish), scaled in depth, width and resolution
together for B1-B7 (compound scaling). ``efficientnet_b0`` is torchvision's (5,288,548 parameters
at 1000 classes, with stochastic depth 0.2). ``efficientnet_b0_cifar`` is written here from the
paper's table 1, reusing MobileNet V2's ``InvertedResidual`` with SE ratio 0.25, with a stride-1 stem
and a stride-1 second stage so a 32 px input ends at 4x4; it leaves out stochastic depth (short
CIFAR schedules do not need it). Built with the ImageNet strides it has exactly torchvision's count.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnlab.models._common import register_torchvision, register_variant
from cnnlab.models.blocks import ConvNormAct
from cnnlab.models.mobilenet import InvertedResidual

# (expansion, kernel, stride, output channels, repeats) -- Tan & Le, table 1 (stages 2-8)
_B0_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3)]
_B0_STAGES += [(6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


class EfficientNet(nn.Module):
    """Stem 3x3 (32) -> 7 MBConv stages -> 1x1 conv 1280 -> global average pool -> dropout -> linear."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_stride: int = 1,
        second_stride: int = 1,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.stem = ConvNormAct(in_channels, 32, 3, stem_stride, act="silu")
        stages, c = [], 32
        for i, (t, k, s, c_out, n) in enumerate(_B0_STAGES):
            s = second_stride if i == 1 else s
            blocks = []
            for j in range(n):
                blocks.append(InvertedResidual(c, c_out, s if j == 0 else 1, t, kernel=k, act="silu", se_ratio=0.25))
                c = c_out
            stages.append(nn.Sequential(*blocks))
        stages.append(ConvNormAct(c, 1280, 1, act="silu"))
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(self.stem(x)))))


def _efficientnet(*, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, **kw) -> nn.Module:
    return EfficientNet(num_classes=num_classes, in_channels=in_channels, **kw)


register_variant(
    "efficientnet_b0_cifar",
    partial(_efficientnet, stem_stride=1, second_stride=1),
    "EfficientNet-B0 for 28-32 px inputs (MBConv + SE + SiLU, stride-1 stem and second stage).",
)
register_torchvision("efficientnet_b0", "torchvision EfficientNet-B0 (ImageNet-shaped, weights=None).")
