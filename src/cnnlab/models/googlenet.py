"""GoogLeNet / Inception-v1 (Szegedy et al. 2014) with optional auxiliary classifiers.

Seed 002's "GoogLeNet / Inception-v1" section: each Inception module runs 1x1, 3x3 and 5x5
convolutions and a 3x3 max pool side by side and concatenates them along channels; 1x1 "reduce"
convs in front of the 3x3 and 5x5 branches keep the cost down (the seed's 192 -> 128 example: 47%
fewer weights). Nine modules (3a-3b, 4a-4e, 5a-5b) with max pooling in between, global average
pooling, dropout 0.4 and one linear layer give ~7M parameters (6,624,904 in torchvision's version
without auxiliary heads). Two auxiliary classifiers after 4a and 4d fight vanishing gradients
during training; their losses are added with weight 0.3.

Output contract (both ``googlenet`` and ``googlenet_cifar``):

- ``model.aux_loss_weight`` is 0.3 (a float attribute; set it to change the weight).
- With ``aux_logits=True`` **and** ``model.training``, ``forward`` returns a namedtuple
  ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)`` (torchvision's type and field order): the
  main logits first, then the heads after 4d and 4a, each ``(B, num_classes)``. A training loop adds
  ``aux_loss_weight * CE(aux, y)`` for every field after the first.
- Otherwise (eval mode, or ``aux_logits=False``, the default) it returns the logits tensor alone,
  so evaluation, export and prediction code never see the tuple.

``googlenet_cifar`` is written here for 28-32 px inputs: a two-conv 3x3 stem and one 2x2 max pool
(32 -> 16) replace the 7x7 stride-2 stem and its two pools, so the modules see 16x16, 8x8 and 4x4
maps. It uses the paper's true 5x5 branch (torchvision's version uses 3x3 there, kept for
compatibility with its weights) and adds batch norm after every conv.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from cnnlab.models._common import register_variant, torchvision_model
from cnnlab.models.blocks import ConvNormAct


def __getattr__(name: str) -> Any:
    # torchvision's GoogLeNetOutputs, looked up on first use: importing torchvision.models costs
    # seconds (it pulls in torch._dynamo), which a run that never builds GoogLeNet should not pay.
    if name == "GoogLeNetOutputs":
        return importlib.import_module("torchvision.models.googlenet").GoogLeNetOutputs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


AUX_LOSS_WEIGHT = 0.3  # Szegedy et al.: auxiliary losses weighted by 0.3

# name: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) -- Szegedy et al., table 1
_MODULES: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class Inception(nn.Module):
    """Four parallel branches concatenated: (B, C, H, W) -> (B, c1 + c3 + c5 + cp, H, W)."""

    def __init__(self, c_in: int, c1: int, r3: int, c3: int, r5: int, c5: int, cp: int):
        super().__init__()
        self.branch1 = ConvNormAct(c_in, c1, 1)
        self.branch3 = nn.Sequential(ConvNormAct(c_in, r3, 1), ConvNormAct(r3, c3, 3))
        self.branch5 = nn.Sequential(ConvNormAct(c_in, r5, 1), ConvNormAct(r5, c5, 5))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), ConvNormAct(c_in, cp, 1))
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1)


class AuxHead(nn.Module):
    """Auxiliary classifier: avg pool to 4x4 -> 1x1 conv 128 -> FC 1024 -> dropout 0.7 -> FC classes."""

    def __init__(self, c_in: int, num_classes: int, dropout: float = 0.7):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.conv = ConvNormAct(c_in, 128, 1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.relu(self.fc1(self.flatten(self.conv(self.pool(x)))))))


class SmallGoogLeNet(nn.Module):
    """Stem (64, 192 @ 32x32) -> pool (16) -> 3a 3b -> pool (8) -> 4a-4e -> pool (4) -> 5a 5b -> GAP -> FC."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, aux_logits: bool = False, dropout: float = 0.4):
        super().__init__()
        self.aux_loss_weight = AUX_LOSS_WEIGHT
        self.stem = nn.Sequential(ConvNormAct(in_channels, 64, 3), ConvNormAct(64, 192, 3), nn.MaxPool2d(2))
        c = 192
        for name, cfg in _MODULES.items():
            module = Inception(c, *cfg)
            setattr(self, f"inception{name}", module)
            c = module.out_channels
        self.pool3 = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)  # after 3b
        self.pool4 = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)  # after 4e
        self.aux1 = AuxHead(512, num_classes) if aux_logits else None  # after 4a
        self.aux2 = AuxHead(528, num_classes) if aux_logits else None  # after 4d
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | Any:
        x = self.inception3b(self.inception3a(self.stem(x)))  # (B, 480, 16, 16)
        x = self.inception4a(self.pool3(x))  # (B, 512, 8, 8)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (B, 528, 8, 8)
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.inception5b(self.inception5a(self.pool4(self.inception4e(x))))  # (B, 1024, 4, 4)
        logits = self.fc(self.dropout(self.flatten(self.pool(x))))
        if aux1 is not None:
            return __getattr__("GoogLeNetOutputs")(logits, aux2, aux1)
        return logits


def _googlenet_cifar(
    *, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, aux_logits: bool = False, **kw
) -> nn.Module:
    return SmallGoogLeNet(num_classes=num_classes, in_channels=in_channels, aux_logits=aux_logits, **kw)


def _googlenet(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, aux_logits: bool = False, **kw
) -> nn.Module:
    # init_weights=True selects torchvision's truncated-normal init explicitly (and silences its warning)
    kw.setdefault("init_weights", True)
    model = torchvision_model(
        "googlenet", num_classes=num_classes, in_channels=in_channels, aux_logits=aux_logits, **kw
    )
    model.aux_loss_weight = AUX_LOSS_WEIGHT
    return model


register_variant(
    "googlenet_cifar",
    _googlenet_cifar,
    "GoogLeNet/Inception-v1 for 28-32 px inputs (BN, true 5x5 branch; aux_logits=True adds the two aux heads).",
)
register_variant(
    "googlenet",
    _googlenet,
    "torchvision GoogLeNet (ImageNet-shaped, weights=None; aux_logits=True adds the two aux heads).",
    num_classes=1000,
    input_size=224,
    torchvision=True,
)
