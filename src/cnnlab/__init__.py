"""cnnlab: convolutional neural networks on images, to learn from and to work with.

The public API is small and mirrors the CLI. Names are imported lazily so that ``import cnnlab``
stays fast and so that the NumPy-only parts (``cnnlab.numpy_engine``, ``cnnlab.data``) never pull
in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "create_model": "cnnlab.models",
    "list_models": "cnnlab.models",
    "load_dataset": "cnnlab.data.datasets",
    "list_datasets": "cnnlab.data.datasets",
    "Config": "cnnlab.config",
    "load_config": "cnnlab.config",
    "train": "cnnlab.api",
    "evaluate": "cnnlab.api",
    "cv": "cnnlab.api",
    "lr_find": "cnnlab.api",
    "predict": "cnnlab.serve.batch",
    "export": "cnnlab.export",  # the package is callable: cnnlab.export(MODEL, FORMAT)
    "tune": "cnnlab.tune",  # the module is callable: cnnlab.tune(space=..., data=...)
    "load_model": "cnnlab.runs.model_file",
    "Predictor": "cnnlab.serve.predictor",
    "summary": "cnnlab.models.summary",
    "CnnlabError": "cnnlab.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
