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

import inspect
import re
from typing import Any

from cnnlab.errors import CnnlabError, did_you_mean
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


def check_model_args(name: str, kwargs: dict[str, Any], in_channels: int | None, input_size: int | None) -> None:
    """Refuse a model name or ``model.kwargs`` its builder cannot take, before any data is read.

    The model is built once on the meta device (no memory, no weights) with ``kwargs``; a misspelt
    argument is then one CnnlabError naming it and listing the accepted ones, instead of a TypeError
    after the data has loaded. Other builder refusals (an input too small for its poolings) wait for
    the real build, which knows the data's image size and channels.
    """
    import torch

    builder = None if name.startswith("timm:") else MODELS.get(name)
    sizes = {k: v for k, v in (("in_channels", in_channels), ("input_size", input_size)) if v is not None}
    try:
        with torch.device("meta"):
            create_model(name, num_classes=2, **sizes, **kwargs)
    except TypeError as exc:
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if bad is None:
            raise CnnlabError(f"model.kwargs do not suit model {name!r}: {exc}") from None
        accepted = _accepted_args(exc, builder)
        listing = f" It accepts: {', '.join(accepted)}." if accepted else " It takes no extra arguments."
        raise CnnlabError(
            f"model.kwargs: model {name!r} has no argument {bad.group(1)!r}.{did_you_mean(bad.group(1), accepted)}"
            + (listing if builder is not None else "")
        ) from None
    except Exception:  # noqa: BLE001 - the real build reports the rest with the data's true shape
        return


_SET_BY_CNNLAB = {"self", "num_classes", "in_channels", "input_size", "kw", "kwargs"}


def _accepted_args(exc: TypeError, builder) -> list[str]:
    """Keyword arguments along the chain that passed ``**kw`` down to the callee that refused one."""
    if builder is None:
        return []
    frames, tb = [], exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    names: set[str] = set(_keyword_params(builder))
    for frame in frames:
        code = frame.f_code
        if code.co_flags & inspect.CO_VARKEYWORDS and "cnnlab/models" in code.co_filename.replace("\\", "/"):
            names |= set(code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount])
    callee = re.match(r"([\w.]+)\(\) got an unexpected", str(exc))
    if callee and frames:
        obj = frames[-1].f_globals.get(callee.group(1).split(".")[0])
        if inspect.isclass(obj):
            names |= set(_keyword_params(obj))
    return sorted(names - _SET_BY_CNNLAB)


def _keyword_params(fn) -> list[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds and p.default is not inspect.Parameter.empty]


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
