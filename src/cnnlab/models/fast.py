"""Small, fast CNNs for speed recipes (``configs/mnist_fast.yaml``).

``fast_cnn`` spends its compute where it pays on a CPU: a few 3x3 Conv-BN-ReLU stages, each halving
the resolution with a max pool, and a linear classifier on the last map. BatchNorm makes large
learning rates (one-cycle SGD with Nesterov momentum) stable, so one or two epochs at a large
batch reach 99 % on MNIST. Widths are a tuple, so the same builder gives a wider variant for
harder data.
"""

from __future__ import annotations

from torch import nn

from cnnlab.models import register_model


def _stage(c_in: int, c_out: int) -> list[nn.Module]:
    # (B, c_in, H, W) -> (B, c_out, H/2, W/2)
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    ]


@register_model
def fast_cnn(
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 28,
    widths: tuple[int, ...] | list[int] = (16, 32, 64),
    dropout: float = 0.0,
    **kw,
) -> nn.Module:
    """Conv-BN-ReLU-MaxPool stages of ``widths`` channels, then dropout and one linear layer."""
    layers: list[nn.Module] = []
    c, side = in_channels, input_size
    for w in widths:
        layers += _stage(c, w)
        c, side = w, side // 2
    if side < 1:
        raise ValueError(f"input_size {input_size} is too small for {len(widths)} pooling stages")
    layers += [nn.Flatten(), nn.Dropout(dropout), nn.Linear(c * side * side, num_classes)]
    return nn.Sequential(*layers)
