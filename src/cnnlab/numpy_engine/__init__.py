"""cnnlab.numpy_engine: a convolutional network engine in pure NumPy that trains for real.

Seed 003 showed a CNN from scratch that handled one grayscale image at a time with patch loops
(about 2 hours per MNIST epoch). This engine keeps the from-scratch spirit - every layer has a
readable ``forward`` and ``backward`` - but works on batches of multi-channel images with
vectorised im2col, and is checked against finite differences and against torch. It never imports
torch. Names follow torch: ``Conv2d``, ``MaxPool2d``, ``Linear``, ``CrossEntropyLoss``, ``SGD``, ``Adam``.
"""

from cnnlab.numpy_engine.layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
)
from cnnlab.numpy_engine.losses import CrossEntropyLoss
from cnnlab.numpy_engine.model import Module, Parameter, Sequential, load_npz, manual_seed, save_npz
from cnnlab.numpy_engine.models import NUMPY_MODELS, allconv, create_model, lenet
from cnnlab.numpy_engine.optim import SGD, Adam, AdamW, RMSprop

__all__ = [
    "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "GlobalAvgPool2d", "LeakyReLU",
    "Linear", "MaxPool2d", "ReLU", "Sigmoid", "Tanh", "CrossEntropyLoss", "Module", "Parameter", "Sequential",
    "load_npz", "manual_seed", "save_npz", "NUMPY_MODELS", "create_model", "allconv", "lenet",
    "SGD", "Adam", "AdamW", "RMSprop",
]  # fmt: skip
