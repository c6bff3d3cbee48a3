"""Ready-made networks for the NumPy engine, registered by name for ``cnnlab scratch train --model``.

``lenet`` is LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, the classic small CNN: two 5x5
convolutions (6 and 16 channels) each followed by 2x2 max pooling, then 120-84-classes fully
connected layers. For 28x28 inputs the first convolution pads by 2, so 1x28x28 (MNIST) and
3x32x32 (CIFAR-10) both reach the same 16x5x5 feature map. ``allconv`` is a small
all-convolutional net (stride-2 convolutions, batch norm, global average pooling, dropout) that
shows those layers working in a model and accepts any input size from 8x8 (scikit-learn's digits);
it is not faster than LeNet. Builders are keyword-only, like ``cnnlab.models``.
"""

from __future__ import annotations

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.numpy_engine.layers import (
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    ReLU,
)
from cnnlab.numpy_engine.model import Sequential
from cnnlab.registry import Registry

NUMPY_MODELS: Registry = Registry("numpy-engine model")


def _check_size(name: str, input_size: int, allowed: tuple[int, ...]) -> None:
    if input_size not in allowed:
        raise CnnlabError(
            f"model {name!r} supports input sizes {allowed}, got {input_size}; resize the images or pick another model"
        )


@NUMPY_MODELS.register()
def lenet(
    *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, dtype=np.float32, init: str = "torch", **kw
) -> Sequential:
    """LeNet-5 with ReLU: conv5(6) - pool - conv5(16) - pool - fc120 - fc84 - fc(num_classes); 61,706 params
    for 1x28x28 / 10 classes. ``init`` is torch's default U(+-1/sqrt(fan_in)) unless set to "he" or
    "xavier" (on MNIST with Adam it reached 97.8-98.0% after one epoch vs 97.1-97.7% for He, 2 seeds)."""
    _check_size("lenet", input_size, (28, 32))
    pad = 2 if input_size == 28 else 0  # 28+4-5+1 = 28 and 32-5+1 = 28: both give 28x28 -> 14 -> 10 -> 5
    return Sequential(
        Conv2d(in_channels, 6, 5, padding=pad, dtype=dtype, init=init),  # (B, 6, 28, 28)
        ReLU(),
        MaxPool2d(2),  # (B, 6, 14, 14)
        Conv2d(6, 16, 5, dtype=dtype, init=init),  # (B, 16, 10, 10)
        ReLU(),
        MaxPool2d(2),  # (B, 16, 5, 5)
        Flatten(),  # (B, 400)
        Linear(16 * 5 * 5, 120, dtype=dtype, init=init),
        ReLU(),
        Linear(120, 84, dtype=dtype, init=init),
        ReLU(),
        Linear(84, num_classes, dtype=dtype, init=init),
    )


@NUMPY_MODELS.register()
def allconv(*, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, dtype=np.float32, **kw) -> Sequential:
    """Three stride-2 3x3 convolutions (16-32-64 channels) with batch norm and ReLU, global average
    pooling, dropout 0.1 and a linear classifier; 24,170 parameters for 1 channel / 10 classes."""
    _check_size("allconv", input_size, tuple(range(8, 257)))
    return Sequential(
        Conv2d(in_channels, 16, 3, stride=2, padding=1, dtype=dtype),  # (B, 16, H/2, W/2)
        BatchNorm2d(16, dtype=dtype),
        ReLU(),
        Conv2d(16, 32, 3, stride=2, padding=1, dtype=dtype),  # (B, 32, H/4, W/4)
        BatchNorm2d(32, dtype=dtype),
        ReLU(),
        Conv2d(32, 64, 3, stride=2, padding=1, dtype=dtype),  # (B, 64, H/8, W/8)
        BatchNorm2d(64, dtype=dtype),
        ReLU(),
        GlobalAvgPool2d(),  # (B, 64)
        Dropout(0.1),
        Linear(64, num_classes, dtype=dtype),
    )


def create_model(name: str, **kwargs) -> Sequential:
    """Build a registered NumPy-engine model by name (CnnlabError with a hint for unknown names)."""
    return NUMPY_MODELS.create(name, **kwargs)
