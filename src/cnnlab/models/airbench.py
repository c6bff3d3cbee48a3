"""``airbench``: the network of Keller Jordan's CIFAR-10 speed records (airbench94, 2024), for small inputs.

The speed records reach 94 % on CIFAR-10 in a few GPU seconds with a deliberately plain network: a
2x2 "whitening" convolution as the stem, then three groups of (3x3 conv, 2x2 max pool, BatchNorm,
GELU, 3x3 conv, BatchNorm, GELU), a global max pool and a bias-free linear head whose logits are
scaled down (``logit_scale`` 1/9 in airbench). Pooling right after the first conv of each group
puts most of the compute at low resolution, which is also what a CPU wants. This file builds the
same shape with free widths: ``airbench`` uses airbench94's (24-wide stem, groups 64-256-256, about
2 M parameters); ``configs/cifar10_fast.yaml`` uses narrower groups sized for a CPU budget.

Differences from airbench: the stem is learned from its default initialisation (airbench fixes it
to the ZCA whitening filters of 2x2 training patches; see docs/benchmarks.md, "CIFAR-10 speed
recipe", for what is left); BatchNorm keeps its learnable scale.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models import register_model


class ConvGroup(nn.Sequential):
    """(B, c_in, H, W) -> (B, c_out, H/2, W/2): conv, pool, BN, GELU, conv, BN, GELU (airbench's order)."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float = 0.4):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(c_out, momentum=bn_momentum),
            nn.GELU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out, momentum=bn_momentum),
            nn.GELU(),
        )


class AirbenchNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, widths, stem_width: int, logit_scale: float):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem_width, 2, bias=True), nn.GELU())  # 32 -> 31
        groups, c = [], stem_width
        for w in widths:
            groups.append(ConvGroup(c, w))
            c = w
        self.groups = nn.Sequential(*groups)  # 31 -> 15 -> 7 -> 3
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(c, num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.groups(self.stem(x))).flatten(1)  # (B, widths[-1])
        return self.fc(x) * self.logit_scale  # (B, num_classes)


@register_model
def airbench(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    widths: tuple[int, ...] | list[int] = (64, 256, 256),
    stem_width: int = 24,
    logit_scale: float = 1 / 9,
    **kw,
) -> nn.Module:
    """airbench94's network: 2x2 stem, conv groups of ``widths`` channels, max pool, scaled linear head."""
    side = input_size - 1
    for _ in widths:
        side //= 2
    if side < 1:
        raise ValueError(f"input_size {input_size} is too small for {len(widths)} pooling groups")
    return AirbenchNet(num_classes, in_channels, tuple(widths), stem_width, logit_scale)
