"""DenseNet (Huang et al. 2017): every layer receives the feature maps of all earlier layers in its block.

Seed 002's "DenseNet" entry: inside a dense block, layer l sees ``concat(x_0, ..., x_{l-1})`` and adds
``k`` (the growth rate) new channels; BN-ReLU-1x1 "bottleneck" convs (4k channels) keep the 3x3 convs
cheap, and transition layers (BN-ReLU-1x1 conv halving the channels, 2x2 average pool) sit between
blocks. Feature reuse gives fewer parameters than a ResNet of similar accuracy.

``densenet121`` ... ``densenet201`` are torchvision's (DenseNet-121: 7,978,856 parameters at 1000
classes). Small-input variants written here: ``densenet121_cifar`` (the 6-12-24-16 block layout,
k = 32, a 3x3 stem and no stem pooling) and ``densenet_bc100_cifar``, the paper's own CIFAR network
(DenseNet-BC, L = 100, k = 12: three blocks of 16 bottleneck layers, 0.8M parameters).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnlab.models._common import register_torchvision, register_variant


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 (4k) -> BN-ReLU-3x3 (k); output is concat(x, new): (B, C, H, W) -> (B, C + k, H, W)."""

    def __init__(self, c_in: int, growth: int, bn_size: int = 4):
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(c_in), nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c_in, bn_size * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(bn_size * growth), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))
        return torch.cat([x, new], dim=1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv (compress channels) -> 2x2 average pool: (B, C, H, W) -> (B, C', H/2, W/2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.Conv2d(c_in, c_out, 1, bias=False), nn.AvgPool2d(2)
        )


class SmallDenseNet(nn.Module):
    """3x3 stem -> [dense block -> transition] x (n-1) -> dense block -> BN-ReLU -> GAP -> linear."""

    def __init__(
        self,
        blocks: tuple[int, ...],
        growth: int,
        num_classes: int = 10,
        in_channels: int = 3,
        compression: float = 0.5,
        bn_size: int = 4,
    ):
        super().__init__()
        c = 2 * growth
        self.stem = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i, n in enumerate(blocks):
            layers = []
            for _ in range(n):
                layers.append(DenseLayer(c, growth, bn_size))
                c += growth
            stages.append(nn.Sequential(*layers))
            if i < len(blocks) - 1:
                c_out = int(c * compression)
                stages.append(Transition(c, c_out))
                c = c_out
        self.features = nn.Sequential(*stages)
        self.post = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.post(self.features(self.stem(x))))))


def _densenet(
    blocks: tuple[int, ...], growth: int, *, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, **kw
) -> nn.Module:
    return SmallDenseNet(blocks, growth, num_classes=num_classes, in_channels=in_channels, **kw)


register_variant(
    "densenet121_cifar",
    partial(_densenet, (6, 12, 24, 16), 32),
    "DenseNet-121 layout (k=32) for 28-32 px inputs (3x3 stem, no stem pooling).",
)
register_variant(
    "densenet_bc100_cifar",
    partial(_densenet, (16, 16, 16), 12),
    "DenseNet-BC-100 (k=12), the paper's CIFAR network (0.8M parameters).",
)
for _depth in (121, 161, 169, 201):
    register_torchvision(f"densenet{_depth}", f"torchvision DenseNet-{_depth} (ImageNet-shaped, weights=None).")
