"""SE-ResNet: ResNet with squeeze-and-excitation in every residual block (Hu et al., CVPR 2018).

Seed 002's "SENet" entry: each block learns a per-channel gate from the global average of its output
(squeeze), passes it through a small bottleneck MLP with reduction ratio r = 16 (excitation) and
rescales the channels before the residual addition. Here the SE module of ``cnnlab.models.blocks``
plugs into the small-input ResNet of ``cnnlab.models.resnet`` through its ``se_reduction`` argument,
so an SE-ResNet is the same network plus ``2 C^2 / r`` weights (and ``C/r + C`` biases) per block.
"""

from __future__ import annotations

from functools import partial

from cnnlab.models._common import register_variant
from cnnlab.models.resnet import _resnet

_REDUCTION = 16  # Hu et al.'s default ratio

for _depth in (18, 34, 50):
    register_variant(
        f"se_resnet{_depth}_cifar",
        partial(_resnet, _depth, se_reduction=_REDUCTION),
        f"SE-ResNet-{_depth} for 28-32 px inputs (squeeze-excitation r=16 in every block).",
    )
