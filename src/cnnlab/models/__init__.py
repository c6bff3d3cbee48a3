"""Model registry.

Every builder is a keyword-only function registered with ``@register_model``::

    @register_model
    def seed_cnn(*, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, **kw) -> nn.Module

``input_size`` is the square side length the network will see; builders use it to size their
classifier heads, so every model is shape-flexible. ``create_model(name, **kw)`` builds one and
``list_models(pattern)`` lists names. Importing this package imports every family module so that
their decorators run.
"""

from __future__ import annotations

from typing import Any

from cnnlab.registry import Registry

MODELS: Registry = Registry("model")


def register_model(fn):
    """Decorator: register ``fn`` under its own name."""
    return MODELS.register()(fn)


def create_model(name: str, **kwargs: Any):
    """Build a registered model: ``create_model("seed_cnn", num_classes=10, in_channels=3, input_size=32)``."""
    return MODELS.create(name, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)


# Family modules register themselves on import (keep this list sorted; one file per family).
from cnnlab.models import (  # noqa: E402,F401
    airbench,
    alexnet,
    custom,
    densenet,
    efficientnet,
    fast,
    googlenet,
    mobilenet,
    resnet,
    se_resnet,
    seed,
    vgg,
    wide_resnet,
)
