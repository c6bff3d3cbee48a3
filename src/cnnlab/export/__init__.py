"""Exports of a trained model, each checked for parity with the original: ``cnnlab.export(MODEL, FORMAT)``.

The package is itself callable, so ``cnnlab.export("runs/mnist", "openvino", int8=True)`` mirrors
``cnnlab export runs/mnist --format openvino --int8`` whether ``cnnlab.export`` was reached through
the lazy public namespace or imported as this package. Formats (one module each): ``onnx``,
``torchscript``, ``openvino`` (optionally INT8), ``triton`` (a Triton/KServe model repository).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# format -> (module, function); each function takes (model_path, out, **options) and checks parity
FORMATS = {
    "onnx": ("cnnlab.export.onnx", "export_onnx"),
    "torchscript": ("cnnlab.export.torchscript", "export_torchscript"),
    "openvino": ("cnnlab.export.openvino", "export_openvino"),
    "triton": ("cnnlab.export.triton", "export_triton"),
}


@dataclass
class ExportResult:
    path: Path  # the file written (triton: the model's folder REPO/NAME)
    parity: Any  # cnnlab.export.parity.ParityReport
    int8: Any = None  # openvino with int8=True: cnnlab.export.openvino.Int8Report


def export(model: str | Path, format: str = "onnx", out: str | Path | None = None, **options: Any) -> ExportResult:
    """Export ``model`` (run folder, model folder or ``demo:mnist``) and check it against the original.

    Args:
        format: onnx, torchscript, openvino or triton.
        out: the file to write (triton: the repository folder); default beside the model.
        **options: the format's own, as its command-line flags: ``parity_n``, ``tolerance``;
            ``opset``, ``exporter`` (onnx, openvino, triton); ``int8``, ``calibration``, ``max_drop``
            (openvino); ``name``, ``max_batch_size`` (triton).

    Raises:
        CnnlabError: unknown format or option, or an export that does not reproduce the model.
    """
    from cnnlab.errors import CnnlabError
    from cnnlab.runs.builtin import resolve_run_path

    if format not in FORMATS:
        raise CnnlabError(f"unknown export format {format!r}; choose {', '.join(FORMATS)}")
    module, name = FORMATS[format]
    fn = getattr(importlib.import_module(module), name)
    allowed = [p for p in inspect.signature(fn).parameters if p not in ("model_path", "out", "repo")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise CnnlabError(f"{format} export does not take {unknown}; its options are {allowed}")
    result = fn(resolve_run_path(model), out, **options)
    return ExportResult(*result)


class _CallableModule(types.ModuleType):
    """``cnnlab.export(...)`` calls :func:`export` even once ``cnnlab.export`` names this package."""

    def __call__(self, *args: Any, **kwargs: Any) -> ExportResult:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["export", "ExportResult", "FORMATS"]
