"""``model.json``: reading it and the one check of model metadata (torch-free, NumPy-free).

Every reader of model metadata goes through :func:`check_model_meta`: the model file's loader, a
run opened by ``open_run`` (torch and NumPy-engine runs), fine-tuning from a run, and
:class:`~cnnlab.serve.predictor.Predictor` for model folders and for the metadata that exported
ONNX, OpenVINO and TorchScript files carry. A tampered file is one error naming the file and the
key, never a ``KeyError`` or a wrong prediction later.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError

META = "model.json"
REQUIRED = ("architecture", "kwargs", "classes", "input_shape", "mean", "std")


def check_model_meta(meta: Any, where: str | Path, *, rebuild: bool = True) -> None:
    """The one check of model metadata, wherever it comes from: ``model.json`` of a torch or NumPy run,
    or the metadata an exported file carries (``rebuild=False``: an ONNX, OpenVINO or TorchScript file
    holds the network itself, so it needs no ``architecture``/``kwargs`` to rebuild one).

    Refused, naming ``where`` and the key: missing keys; an architecture that is not a name or kwargs
    that are not an object; classes that are not a non-empty list of distinct non-empty names; an
    input shape other than [C, S, S] with C 1 or 3; a mean/std that is not C finite numbers (std > 0);
    a resize size outside (S, 8 S].
    """
    if not isinstance(meta, dict):
        raise CnnlabError(f"{where} is not a JSON object (got {type(meta).__name__}); re-save the model")
    missing = [k for k in (REQUIRED if rebuild else REQUIRED[2:]) if k not in meta]
    if missing:
        raise CnnlabError(f"{where} lacks {', '.join(missing)}; re-save the model (cnnlab train or export)")
    if rebuild and (not isinstance(meta["architecture"], str) or not isinstance(meta["kwargs"], dict)):
        raise CnnlabError(f"{where}: 'architecture' must be a name and 'kwargs' a JSON object")
    classes = meta["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise CnnlabError(f"{where}: 'classes' must be a non-empty list of class names, got {str(classes)[:200]}")
    if len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if classes.count(c) > 1})
        raise CnnlabError(f"{where}: class names must be unique; repeated: {dup[:10]}")
    shape = meta["input_shape"]
    ok = isinstance(shape, list) and len(shape) == 3 and all(type(v) is int and v > 0 for v in shape)
    if not ok or shape[0] not in (1, 3) or shape[1] != shape[2]:
        raise CnnlabError(f"{where}: 'input_shape' must be [C, S, S] with C 1 or 3, got {str(shape)[:100]}")
    for key in ("mean", "std"):
        vals = meta[key]
        numbers = isinstance(vals, list) and all(type(v) in (int, float) for v in vals)
        if not numbers or len(vals) != shape[0] or not all(math.isfinite(v) for v in vals):
            raise CnnlabError(f"{where}: {key!r} must list {shape[0]} finite number(s), got {str(vals)[:100]}")
    if min(meta["std"]) <= 0:
        raise CnnlabError(f"{where}: 'std' must be positive, got {meta['std']}")
    size, resize = shape[1], meta.get("resize_size")
    if resize is not None and not (type(resize) is int and size < resize <= 8 * size):
        raise CnnlabError(f"{where}: 'resize_size' must be null or an integer in ({size}, {8 * size}], got {resize!r}")
