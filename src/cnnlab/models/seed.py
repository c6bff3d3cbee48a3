"""The seeds' own networks: seed 000's CIFAR CNN, seed 001's PlainNN and MNIST_CNN, and LeNet-5.

All builders are shape-flexible: ``in_channels``, ``input_size`` (square side) and ``num_classes``
size the layers, so the same network runs on MNIST (1x28x28) and CIFAR (3x32x32).

Parameter counts (checked in tests/models/test_seed.py):
- ``seed_cnn`` on 3x32x32, 10 classes: 1,278,218. Seed 000's table prints ~1,276,734 because it
  leaves out the BatchNorm1d layers of the two hidden FC layers (2*512 + 2*256 = 1,536 parameters).
- ``plain_mlp`` on 1x28x28: 535,818 (seed 001's PlainNN).
- ``mnist_cnn`` on 1x28x28: 1,625,866 (seed 001's MNIST_CNN). Its code pools once, to 14x14, and
  feeds 64*14*14 features to the first FC layer, although its comment says 7x7; we follow the code.
- ``lenet5`` on 1x32x32: 61,706 (LeCun et al. 1998, tanh and average pooling, full C3 connections).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models import register_model


def _conv_block(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
    # Conv3x3(pad 1) keeps H, W; MaxPool2d(2) halves them.  (B, c_in, H, W) -> (B, c_out, H/2, W/2)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Dropout2d(dropout),
    )


def _fc_block(f_in: int, f_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(f_in, f_out), nn.BatchNorm1d(f_out), nn.ReLU(inplace=True), nn.Dropout(dropout))


class SeedCNN(nn.Module):
    """Seed 000: three Conv-BN-ReLU-MaxPool-Dropout2d blocks (32/64/128) and a 512-256 MLP head."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        widths: tuple[int, ...] = (32, 64, 128),
        hidden: tuple[int, ...] = (512, 256),
        conv_dropout: float = 0.3,
        fc_dropout: float = 0.5,
    ):
        super().__init__()
        blocks, c = [], in_channels
        for w in widths:
            blocks.append(_conv_block(c, w, conv_dropout))
            c = w
        self.features = nn.Sequential(*blocks)
        side = input_size // 2 ** len(widths)
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for {len(widths)} pooling stages")
        head, f = [nn.Flatten()], c * side * side
        for h in hidden:
            head.append(_fc_block(f, h, fc_dropout))
            f = h
        head.append(nn.Linear(f, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model
def seed_cnn(*, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, **kw) -> nn.Module:
    """Seed 000's CIFAR-10 CNN (1,278,218 parameters on 3x32x32 with 10 classes)."""
    return SeedCNN(num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kw)


@register_model
def plain_mlp(
    *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, dropout: float = 0.5, **kw
) -> nn.Module:
    """Seed 001's PlainNN: flatten -> 512 -> 256 -> classes with ReLU and dropout 0.5."""
    f = in_channels * input_size * input_size
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(f, 512),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(512, 256),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(256, num_classes),
    )


@register_model
def mnist_cnn(
    *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, dropout: float = 0.25, **kw
) -> nn.Module:
    """Seed 001's MNIST_CNN: two 3x3 convs (32, 64), one 2x2 max pool, FC 128, dropout 0.25."""
    side = input_size // 2  # one pooling stage (the seed's comment claims two; its code has one)
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * side * side, 128),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(128, num_classes),
    )


@register_model
def lenet5(*, num_classes: int = 10, in_channels: int = 1, input_size: int = 32, **kw) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998): conv5(6)-avgpool-conv5(16)-avgpool-FC120-FC84, tanh.

    On 28x28 inputs (MNIST) the first conv pads by 2, as is customary, so the feature maps keep
    the 32x32 geometry of the paper.
    """
    pad = 2 if input_size == 28 else 0
    side = ((input_size + 2 * pad - 4) // 2 - 4) // 2  # 32 -> 28 -> 14 -> 10 -> 5
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=pad),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120),
        nn.Tanh(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, num_classes),
    )
