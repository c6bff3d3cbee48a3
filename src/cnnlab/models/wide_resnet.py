"""Wide residual networks (Zagoruyko & Komodakis 2016): fewer, wider pre-activation residual blocks.

Seed 002 lists Wide ResNet among ResNet's descendants: instead of going deeper, widen each block by a
factor k. WRN-d-k has ``n = (d - 4) / 6`` pre-activation basic blocks per stage, stage widths
16k, 32k, 64k at strides 1, 2, 2 after a 3x3 stem with 16 channels, optional dropout between the two
convs of a block, and a final BN-ReLU, global average pool and linear layer. WRN-28-10 has
36,479,194 parameters for 10 classes (the paper's 36.5M); WRN-16-4 has 2.7M. ``wide_resnet50_2``
and ``wide_resnet101_2`` are torchvision's ImageNet-shaped bottleneck versions (width x2).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models._common import register_torchvision, register_variant
from cnnlab.models.blocks import conv1x1, conv3x3


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3(stride) -> BN-ReLU-dropout-conv3x3, plus identity or 1x1 projection of relu(bn(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1, self.relu1, self.conv1 = nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), conv3x3(c_in, c_out, stride)
        self.bn2, self.relu2 = nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(c_out, c_out)
        self.shortcut = None if (stride == 1 and c_in == c_out) else conv1x1(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.dropout(self.relu2(self.bn2(self.conv1(out)))))
        return out + skip


class WideResNet(nn.Module):
    """WRN-d-k: stem 16 -> 3 stages of n blocks (16k, 32k, 64k) -> BN-ReLU -> GAP -> linear."""

    def __init__(self, depth: int, widen: int, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6:
            raise CnnlabError(f"Wide ResNet depth must be 6n + 4 (16, 22, 28, 40, ...), got {depth}.")
        n = (depth - 4) // 6
        self.stem = conv3x3(in_channels, 16)
        c = 16
        for i, w in enumerate((16 * widen, 32 * widen, 64 * widen)):
            blocks = []
            for j in range(n):
                blocks.append(WideBlock(c, w, stride=2 if (i > 0 and j == 0) else 1, dropout=dropout))
                c = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.post = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))  # (B, 64k, H/4, W/4)
        return self.fc(self.flatten(self.pool(self.post(x))))


def _wrn(depth: int, widen: int, *, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, **kw):
    return WideResNet(depth, widen, num_classes=num_classes, in_channels=in_channels, **kw)


for _depth, _widen in ((16, 4), (28, 10), (40, 2)):
    register_variant(
        f"wrn{_depth}_{_widen}_cifar",
        partial(_wrn, _depth, _widen),
        f"Wide ResNet WRN-{_depth}-{_widen} for 28-32 px inputs (pre-activation, dropout=0 by default).",
    )
for _depth in (50, 101):
    register_torchvision(
        f"wide_resnet{_depth}_2", f"torchvision Wide ResNet-{_depth}-2 (ImageNet-shaped, weights=None)."
    )
