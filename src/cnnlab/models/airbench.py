"""``airbench``: the network of Keller Jordan's CIFAR-10 speed records (airbench94, 2024), for small inputs.

The speed records reach 94 % on CIFAR-10 in a few GPU seconds with a deliberately plain network: a
2x2 "whitening" convolution as the stem, then three groups of (3x3 conv, 2x2 max pool, BatchNorm,
GELU, 3x3 conv, BatchNorm, GELU), a global max pool and a bias-free linear head whose logits are
scaled down (``logit_scale`` 1/9). Pooling right after the first conv of each group puts most of the
compute at low resolution, which is also what a CPU wants. ``airbench`` uses airbench94's widths
(24-wide stem, groups 64-256-256, about 2 M parameters; ``widths`` and ``stem_width`` change them);
``configs/cifar10_fast.yaml`` trains it on a CPU under bf16 autocast.

Three initialisation choices of the records make most of their speed (their ablations: 35 epochs to
94 % with a standard initialisation, 13.5 with all three):

* **Whitening stem.** ``init_from_data(images)`` sets the stem's filters from the training images:
  the covariance of all 2x2 patches (12 numbers for RGB) is diagonalised, each eigenvector becomes a
  filter scaled by 1/sqrt(eigenvalue + eps), and its negative a second filter (so that the GELU after
  it keeps both signs). The stem's output is then decorrelated with unit variance per direction; its
  weights stay fixed (``requires_grad`` False) and only its bias learns. The engine calls this hook on
  every fresh run (``cnnlab.workflow.build_parts``).
* **Identity (Dirac) convolutions.** The first ``c_in`` filters of each 3x3 conv start as the identity,
  so every group starts close to passing its input through: an implicit residual connection.
* **BatchNorm without a learned scale** (only the shift learns, eps 1e-12); the records also raise the
  shift's learning rate 64x, which the recipe does with ``optim.group_lr`` on ``*norm*.bias``.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models import register_model


def _norm(c: int, momentum: float) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c, eps=1e-12, momentum=momentum)
    bn.weight.requires_grad_(False)  # scale fixed at 1: only the shift learns
    return bn


def _identity_conv(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])  # the first c_in filters pass their channel through
    return conv


class ConvGroup(nn.Module):
    """(B, c_in, H, W) -> (B, c_out, H/2, W/2): conv, pool, BN, GELU, conv, BN, GELU (airbench's order)."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float = 0.4):
        super().__init__()
        self.conv1, self.pool, self.norm1 = _identity_conv(c_in, c_out), nn.MaxPool2d(2), _norm(c_out, bn_momentum)
        self.conv2, self.norm2, self.act = _identity_conv(c_out, c_out), _norm(c_out, bn_momentum), nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, widths, stem_width: int, logit_scale: float):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, stem_width, 2, bias=True)  # 32 -> 31, whitening filters
        self.stem_act = nn.GELU()
        groups, c = [], stem_width
        for w in widths:
            groups.append(ConvGroup(c, w))
            c = w
        self.groups = nn.Sequential(*groups)  # 31 -> 15 -> 7 -> 3
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(c, num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.groups(self.stem_act(self.stem(x)))).flatten(1)  # (B, widths[-1])
        return self.fc(x) * self.logit_scale  # (B, num_classes)

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Whitening stem from normalised training images (B, C, H, W); the stem's weights then stay fixed."""
        w = self.stem.weight  # (stem_width, C, k, k)
        c, k = w.shape[1], w.shape[2]
        d = c * k * k
        if w.shape[0] < 2 * d:
            raise ValueError(
                f"a whitening stem needs 2 x {d} filters for {k}x{k} patches of {c} channels; "
                f"stem_width is {w.shape[0]}"
            )
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # (B, C, H', W', k, k)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, d).double()  # one row per patch
        cov = patches.T @ patches / len(patches)  # (d, d)
        eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
        filters = (eigvecs.T / torch.sqrt(eigvals.clamp_min(0) + eps)[:, None]).flip(0).reshape(d, c, k, k)
        w[: 2 * d] = torch.cat([filters, -filters]).to(w.dtype)
        w.requires_grad_(False)


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
    """airbench94's network: whitening 2x2 stem, identity-initialised conv groups, max pool, scaled linear head."""
    side = input_size - 1
    for _ in widths:
        side //= 2
    if side < 1:
        raise ValueError(f"input_size {input_size} is too small for {len(widths)} pooling groups")
    return AirbenchNet(num_classes, in_channels, tuple(widths), stem_width, logit_scale)
