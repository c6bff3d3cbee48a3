"""VGG-11/13/16/19 with and without batch norm (Simonyan & Zisserman 2014), small-input and ImageNet-shaped.

Seed 002's "VGG Networks" section: only 3x3 convolutions (two stacked see 5x5, three see 7x7 with
fewer weights and more non-linearities), five stages separated by 2x2 max pooling, and channel
counts doubling 64 -> 512. The ImageNet-shaped variants (``vgg16`` ...) are torchvision's, whose
4096-4096 classifier holds most of the 138,357,544 parameters of VGG-16. The small-input variants
(``vgg16_cifar``, ``vgg16_bn_cifar`` ...) keep the 13 (or 8/10/16) conv layers but replace the
classifier by global average pooling and one linear layer, the common CIFAR adaptation
(``vgg16_bn_cifar`` has 14,728,266 parameters for 10 classes). Their pools use ``ceil_mode`` so
a 28x28 input shrinks 28 -> 14 -> 7 -> 4 -> 2 -> 1 instead of vanishing, while 32x32 inputs give
the usual 32 -> 16 -> 8 -> 4 -> 2 -> 1.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnlab.models._common import register_torchvision, register_variant

# channels per conv layer, "M" = 2x2 max pool (configurations A, B, D, E of the paper)
_CFGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _stages(cfg: list[int | str], in_channels: int, batch_norm: bool) -> nn.Sequential:
    """One nn.Sequential per stage (convs ... pool), so that fine-tuning can address stages as blocks."""
    stages, layers, c = [], [], in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
            layers = []
            continue
        # convs keep their bias even before BN, as torchvision's VGG does (so counts match published ones)
        layers.append(nn.Conv2d(c, v, 3, padding=1))
        layers += [nn.BatchNorm2d(v), nn.ReLU(inplace=True)] if batch_norm else [nn.ReLU(inplace=True)]
        c = v
    return nn.Sequential(*stages)


class SmallVGG(nn.Module):
    """VGG conv stages -> global average pool -> linear. (B, C, 32, 32) -> (B, 512, 1, 1) -> (B, classes)."""

    def __init__(self, cfg: list[int | str], num_classes: int = 10, in_channels: int = 3, batch_norm: bool = True):
        super().__init__()
        self.features = _stages(cfg, in_channels, batch_norm)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(cfg[-2], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


def _vgg(depth: int, *, batch_norm: bool, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, **kw):
    return SmallVGG(_CFGS[depth], num_classes=num_classes, in_channels=in_channels, batch_norm=batch_norm, **kw)


for _depth in _CFGS:
    for _bn in (False, True):
        _suffix, _with = ("_bn", "with") if _bn else ("", "without")
        register_variant(
            f"vgg{_depth}{_suffix}_cifar",
            partial(_vgg, _depth, batch_norm=_bn),
            f"VGG-{_depth} {_with} batch norm for 28-32 px inputs (global average pool + linear head).",
        )
        register_torchvision(
            f"vgg{_depth}{_suffix}", f"torchvision VGG-{_depth} {_with} batch norm (ImageNet-shaped, weights=None)."
        )
