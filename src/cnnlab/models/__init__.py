"""Model registry.

Every builder is a keyword-only function registered with ``@register_model``::

    @register_model
    def seed_cnn(*, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, **kw) -> nn.Module

``input_size`` is the square side length the network will see; builders use it to size their
classifier heads, so every model is shape-flexible. ``create_model(name, **kw)`` builds one and
``list_models(pattern)`` lists names. Importing this package imports every family module so that
their decorators run. Names starting ``timm:`` are routed to timm (``cnnlab.models.timm_models``,
an optional extra), so a model file whose architecture is ``timm:NAME`` rebuilds like any other.
"""

from __future__ import annotations

from typing import Any

from cnnlab.registry import Registry

MODELS: Registry = Registry("model")


def register_model(fn):
    """Decorator: register ``fn`` under its own name."""
    return MODELS.register()(fn)


def create_model(name: str, **kwargs: Any):
    """Build a registered model: ``create_model("seed_cnn", num_classes=10, in_channels=3, input_size=32)``.

    ``create_model("timm:convnext_nano", ...)`` builds timm's model instead (needs ``pip install timm``).
    """
    if name.startswith("timm:"):
        from cnnlab.models.timm_models import create_timm

        return create_timm(name.removeprefix("timm:"), **kwargs)
    return MODELS.create(name, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching the glob ``pattern``; ``timm:GLOB`` lists timm's CNNs instead."""
    if pattern.startswith("timm:"):
        from cnnlab.models.timm_models import list_timm

        return list_timm(pattern.removeprefix("timm:"))
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
