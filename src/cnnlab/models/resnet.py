"""ResNet (He et al. 2015) and pre-activation ResNet (He et al. 2016), small-input and ImageNet-shaped.

Seed 002's "ResNet" section: a residual block learns ``F(x)`` and outputs ``relu(F(x) + x)``, so the
identity path carries gradients through 100+ layers. Basic blocks (two 3x3 convs) build ResNet-18/34,
bottleneck blocks (1x1 reduce, 3x3, 1x1 expand by 4) build ResNet-50/101/152. Pre-activation blocks
move BN and ReLU before each conv so the shortcut stays a pure identity.

Small-input variants (``resnet18_cifar`` ...) follow the CIFAR adaptation used throughout the
literature: a 3x3 stride-1 stem without max pooling, four stages of 64/128/256/512 channels at
strides 1/2/2/2, global average pooling and one linear layer (ResNet-18 on 3x32x32 with 10 classes
has 11,173,962 parameters). They work on 28x28 (MNIST) and 32x32 (CIFAR) inputs alike. The same
private builder takes ``se_reduction`` to insert squeeze-and-excitation into every block
(``cnnlab.models.se_resnet``). ImageNet-shaped variants (``resnet18`` ... ``resnet152``) are
torchvision's builders with ``weights=None``.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnlab.models._common import register_torchvision, register_variant
from cnnlab.models.blocks import SqueezeExcite, conv1x1, conv3x3


def _shortcut(c_in: int, c_out: int, stride: int, norm: bool = True) -> nn.Module:
    """Identity when shapes match, else a strided 1x1 projection (+ BN) to (B, c_out, H/s, W/s)."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out)) if norm else conv1x1(c_in, c_out, stride)


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN; ``relu(F(x) + shortcut(x))``."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, se_reduction: int | None = None):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1, self.bn1 = conv3x3(c_in, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, c_out), nn.BatchNorm2d(c_out)
        self.se = SqueezeExcite(c_out, reduction=se_reduction) if se_reduction else nn.Identity()
        self.shortcut = _shortcut(c_in, c_out, stride)
        self.relu1, self.relu2 = nn.ReLU(inplace=True), nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu2(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand x4, each with BN; ``relu(F(x) + shortcut(x))``."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, se_reduction: int | None = None):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1, self.bn1 = conv1x1(c_in, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = conv1x1(planes, c_out), nn.BatchNorm2d(c_out)
        self.se = SqueezeExcite(c_out, reduction=se_reduction) if se_reduction else nn.Identity()
        self.shortcut = _shortcut(c_in, c_out, stride)
        self.relu1, self.relu2, self.relu3 = (nn.ReLU(inplace=True) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu3(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation basic block: ``x + conv(relu(bn(conv(relu(bn(x))))))``; the projection sees relu(bn(x))."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, se_reduction: int | None = None):
        super().__init__()
        c_out = planes * self.expansion
        self.bn1, self.relu1, self.conv1 = nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), conv3x3(c_in, planes, stride)
        self.bn2, self.relu2, self.conv2 = nn.BatchNorm2d(planes), nn.ReLU(inplace=True), conv3x3(planes, c_out)
        self.se = SqueezeExcite(c_out, reduction=se_reduction) if se_reduction else nn.Identity()
        self.shortcut = _shortcut(c_in, c_out, stride, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        skip = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(out)
        out = self.conv1(out)
        out = self.se(self.conv2(self.relu2(self.bn2(out))))
        return out + skip


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1, BN-ReLU-3x3 (strided), BN-ReLU-1x1 x4, plus the shortcut."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, se_reduction: int | None = None):
        super().__init__()
        c_out = planes * self.expansion
        self.bn1, self.relu1, self.conv1 = nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), conv1x1(c_in, planes)
        self.bn2, self.relu2 = nn.BatchNorm2d(planes), nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3, self.relu3, self.conv3 = nn.BatchNorm2d(planes), nn.ReLU(inplace=True), conv1x1(planes, c_out)
        self.se = SqueezeExcite(c_out, reduction=se_reduction) if se_reduction else nn.Identity()
        self.shortcut = _shortcut(c_in, c_out, stride, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        skip = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.relu2(self.bn2(out)))
        out = self.se(self.conv3(self.relu3(self.bn3(out))))
        return out + skip


class ResNet(nn.Module):
    """Small-input ResNet: 3x3 stem, four stages, global average pooling, linear head.

    Shapes for 3x32x32: stem (64, 32, 32) -> layer1 (64e, 32, 32) -> layer2 (128e, 16, 16) ->
    layer3 (256e, 8, 8) -> layer4 (512e, 4, 4) -> pool (512e,) -> fc (classes,), e = block expansion.
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: tuple[int, ...],
        num_classes: int = 10,
        in_channels: int = 3,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        se_reduction: int | None = None,
    ):
        super().__init__()
        preact = block in (PreActBlock, PreActBottleneck)
        # pre-activation nets start with a bare conv: the first block applies BN-ReLU itself
        stem = [conv3x3(in_channels, widths[0])]
        if not preact:
            stem += [nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*stem)
        c = widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            stage = []
            for j in range(n):
                stage.append(block(c, w, stride=2 if (i > 0 and j == 0) else 1, se_reduction=se_reduction))
                c = w * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.num_stages = len(layers)
        # the pre-activation design ends with a final BN-ReLU (He et al. 2016, fig. 1b)
        self.post = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True)) if preact else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 64, H, W)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.flatten(self.pool(self.post(x))))  # (B, classes)


# depth -> (block, blocks per stage); the table of He et al. 2015
_DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
_PREACT = {BasicBlock: PreActBlock, Bottleneck: PreActBottleneck}


def _resnet(
    depth: int,
    *,
    preact: bool = False,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    se_reduction: int | None = None,
    **kw,
) -> ResNet:
    block, layers = _DEPTHS[depth]
    block = _PREACT[block] if preact else block
    return ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, se_reduction=se_reduction, **kw)


_SMALL_VARIANTS = [(depth, False) for depth in _DEPTHS] + [(18, True), (34, True), (50, True)]

for _depth, _preact in _SMALL_VARIANTS:
    _kind = "pre-activation ResNet" if _preact else "ResNet"
    register_variant(
        f"{'preact_' if _preact else ''}resnet{_depth}_cifar",
        partial(_resnet, _depth, preact=_preact),
        f"{_kind}-{_depth} for 28-32 px inputs (3x3 stem, no max pool).",
    )
for _depth in _DEPTHS:
    register_torchvision(f"resnet{_depth}", f"torchvision ResNet-{_depth} (ImageNet-shaped, weights=None).")
