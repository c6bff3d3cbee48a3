"""Export a cnnlab model as a Triton Inference Server model repository (what KServe's Triton runtime serves).

The layout is Triton's own::

    REPO/NAME/config.pbtxt        platform onnxruntime_onnx, input "input" FP32 [C, S, S], output "logits" [K]
    REPO/NAME/labels.txt          class names, one a line (Triton's classification extension reads them)
    REPO/NAME/1/model.onnx        the parity-checked ONNX export (see cnnlab.export.onnx)

The network takes the normalised batch, as the ONNX file does: the client divides pixels by 255 and
normalises with the mean/std stored in the config's ``cnnlab`` parameter (and in the ONNX
metadata); ``cnnlab serve`` instead accepts encoded images too (``image`` BYTES, see
:mod:`cnnlab.serve.v2`). Triton answers logits, not probabilities. Every file is written through a
temporary file and renamed, so a killed export leaves no half-written config beside a model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.export.onnx import DEFAULT_OPSET, INPUT, OUTPUT, export_onnx
from cnnlab.export.parity import ParityReport, public_meta
from cnnlab.files import atomic
from cnnlab.runs.builtin import output_dir
from cnnlab.runs.model_file import _model_folder, read_meta

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _pbtxt_string(text: str) -> str:
    """A protobuf text-format string literal: printable ASCII as is, everything else octal-escaped."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        out.append(ch if 32 <= byte < 127 and ch not in '"\\' else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def triton_config(name: str, meta: dict[str, Any], max_batch_size: int = 64) -> str:
    """The ``config.pbtxt`` of the model: ONNX Runtime backend, dynamic batching, CPU or GPU instances."""
    c, h, w = meta["input_shape"]
    info = public_meta(meta)
    return "\n".join(
        [
            f"name: {_pbtxt_string(name)}",
            'platform: "onnxruntime_onnx"',
            f"max_batch_size: {int(max_batch_size)}",
            f'input [ {{ name: "{INPUT}" data_type: TYPE_FP32 dims: [ {c}, {h}, {w} ] }} ]',
            f'output [ {{ name: "{OUTPUT}" data_type: TYPE_FP32 dims: [ {len(meta["classes"])} ] '
            'label_filename: "labels.txt" } ]',
            "dynamic_batching { }",
            # the preprocessing a client must apply, for anyone reading the repository without cnnlab
            f'parameters {{ key: "cnnlab" value {{ string_value: {_pbtxt_string(json.dumps(info))} }} }}',
            "",
        ]
    )


def export_triton(
    model_path: str | Path,
    repo: str | Path | None = None,
    *,
    name: str | None = None,
    max_batch_size: int = 64,
    opset: int = DEFAULT_OPSET,
    parity_n: int = 64,
    tolerance: float = 1e-4,
    exporter: str = "dynamo",
) -> tuple[Path, ParityReport]:
    """Write a Triton model repository for ``model_path``; returns (the model's folder REPO/NAME, parity).

    ``name`` defaults to the run folder's name (the name ``cnnlab serve`` uses in its v2 routes).
    """
    from cnnlab.serve.v2 import served_name  # the same default NAME as the server's v2 routes

    meta = read_meta(model_path)
    name = served_name(model_path, name)
    if not _NAME.match(name):
        raise CnnlabError(f"Triton model name {name!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    if not 1 <= max_batch_size <= 65536:
        raise CnnlabError(f"--max-batch-size must be between 1 and 65536, got {max_batch_size}")
    bad = [c for c in meta["classes"] if "\n" in c or "\r" in c]
    if bad:
        raise CnnlabError(f"class names {bad!r} hold line breaks; labels.txt has one class a line")
    repo = Path(repo) if repo is not None else output_dir(_model_folder(model_path)) / "triton"
    folder = repo / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    _, report = export_onnx(
        model_path, folder / "1" / "model.onnx", opset=opset, parity_n=parity_n, tolerance=tolerance, exporter=exporter
    )
    _write_text(folder / "labels.txt", "".join(f"{c}\n" for c in meta["classes"]))
    _write_text(folder / "config.pbtxt", triton_config(name, meta, max_batch_size))
    return folder, report


def _write_text(path: Path, text: str) -> None:
    atomic.write_text(path, text)


def read_triton_config(path: str | Path):
    """Parse a ``config.pbtxt`` with Triton's own ModelConfig message (from ``tritonclient[grpc]``)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise CnnlabError("reading a Triton config needs tritonclient: pip install 'tritonclient[grpc]'") from None
    try:
        return text_format.Parse(Path(path).read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise CnnlabError(f"{path} is not a valid Triton model configuration: {exc}") from None


__all__ = ["export_triton", "triton_config", "read_triton_config"]
