"""AlexNet (Krizhevsky, Sutskever & Hinton 2012), small-input and ImageNet-shaped.

Seed 002's "AlexNet" section: five conv layers (11x11 stride 4, 5x5, then three 3x3), overlapping
3x3 stride-2 max pooling, ReLU, local response normalisation after the first two convs, and a
dropout-regularised 4096-4096 classifier that holds about 96% of the ~60M weights. ``alexnet`` is
torchvision's single-GPU version (61,100,840 parameters at 1000 classes, no LRN). ``alexnet_cifar``
keeps the layer pattern (LRN included) for 28-32 px inputs: 5x5 and 3x3 kernels at stride 1 in place
of the 11x11 stride-4 stem, and a 1024-1024 classifier after a 3x3 adaptive average pool.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models._common import register_torchvision, register_variant


class SmallAlexNet(nn.Module):
    """(B, C, 32, 32) -> conv5 64 -> pool (15) -> conv5 192 -> pool (7) -> 3 x conv3 -> pool (3) -> FC."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5, lrn: bool = True):
        super().__init__()

        def norm() -> nn.Module:  # the paper's LRN: n=5, alpha=1e-4, beta=0.75, k=2
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0) if lrn else nn.Identity()

        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(in_channels, 64, 5, padding=2), nn.ReLU(inplace=True), norm(), nn.MaxPool2d(3, 2)),
            nn.Sequential(nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), norm(), nn.MaxPool2d(3, 2)),
            nn.Sequential(
                nn.Conv2d(192, 384, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, ceil_mode=True),
            ),
        )
        self.pool = nn.AdaptiveAvgPool2d(3)  # any input >= 15 px ends as (B, 256, 3, 3)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 3 * 3, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(1024, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


def _alexnet(*, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, **kw) -> nn.Module:
    return SmallAlexNet(num_classes=num_classes, in_channels=in_channels, **kw)


register_variant("alexnet_cifar", _alexnet, "AlexNet for 28-32 px inputs (5x5/3x3 stem, LRN, 1024-1024 head).")
register_torchvision("alexnet", "torchvision AlexNet (ImageNet-shaped, weights=None).")
