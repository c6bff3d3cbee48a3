"""Export a cnnlab model file to ONNX (seed 002, step 10: "ONNX Runtime"), checked for parity.

The graph takes the normalised batch ``input`` (B, C, H, W) float32 with a dynamic batch axis and
returns ``logits`` (B, K). Preprocessing is not baked into the graph (so the graph stays the
network that was trained) but travels with it: the model's ``metadata_props`` hold the class
names, input shape, mean/std, decoding and resize rules as JSON under ``cnnlab`` (and a few keys
on their own for tools such as Netron). After writing, :func:`export_onnx` runs the original
torch model and ONNX Runtime on the same inputs and fails unless they agree (see
:mod:`cnnlab.export.parity`).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.errors import CnnlabError
from cnnlab.export.parity import ParityReport, compare, parity_inputs, public_meta, require, torch_logits_fn
from cnnlab.files.atomic import atomic_path
from cnnlab.runs.builtin import output_dir
from cnnlab.runs.model_file import _model_folder, load_model

INPUT, OUTPUT = "input", "logits"
DEFAULT_OPSET = 18


def _require_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise CnnlabError(
            "ONNX export needs the 'export' extra: pip install 'cnnlab[export]' (onnx, onnxruntime, onnxscript)"
        ) from None
    return onnx, onnxruntime


def _torch_export(model: torch.nn.Module, example: torch.Tensor, out: Path, opset: int, exporter: str) -> None:
    """Export with the torch.export-based exporter ("dynamo", falling back to the older one if it fails) or
    with the older TorchScript-based exporter ("legacy": about 10x faster to run, deprecated upstream)."""
    if exporter not in ("dynamo", "legacy"):
        raise CnnlabError(f"unknown ONNX exporter {exporter!r}; use 'dynamo' or 'legacy'")
    sink = io.StringIO()  # the exporter prints progress lines; keep the CLI output ours
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            try:
                torch.onnx.export(
                    model,
                    (example,),
                    str(out),
                    input_names=[INPUT],
                    output_names=[OUTPUT],
                    dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},),
                    opset_version=opset,
                    external_data=False,
                    dynamo=True,
                    verbose=False,
                )
                return
            except Exception:  # noqa: BLE001 - fall back to the legacy exporter below
                pass
        torch.onnx.export(
            model,
            (example,),
            str(out),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            opset_version=min(opset, 17),
            dynamo=False,
        )


def write_metadata(path: Path, meta: dict[str, Any]) -> None:
    """Store the class names and preprocessing in the ONNX file's metadata_props."""
    onnx, _ = _require_onnx()
    model = onnx.load(str(path))
    info = public_meta(meta)
    props = {
        "cnnlab": json.dumps(info),
        "classes": json.dumps(info["classes"]),
        "input_shape": json.dumps(info["input_shape"]),
        "mean": json.dumps(info["mean"]),
        "std": json.dumps(info["std"]),
        "preprocessing": f"decode {info['decode']}; resize {info['resize']}; {info['input_layout']}",
    }
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"cnnlab {info['architecture']}: input {INPUT} (B, {', '.join(map(str, info['input_shape']))})"
    onnx.save(model, str(path))


def read_onnx_meta(path: str | Path) -> dict[str, Any]:
    """The ``cnnlab`` metadata stored in an exported ONNX file."""
    _, ort = _require_onnx()
    props = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    if "cnnlab" not in props:
        raise CnnlabError(f"{path} has no cnnlab metadata (was it exported by 'cnnlab export'?)")
    return json.loads(props["cnnlab"])


def onnx_logits_fn(path: str | Path, threads: int | None = None):
    """A NumPy logits function backed by an ONNX Runtime CPU session."""
    _, ort = _require_onnx()
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def fn(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    return fn


def export_onnx(
    model_path: str | Path,
    out: str | Path | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    parity_n: int = 64,
    tolerance: float = 1e-4,
    exporter: str = "dynamo",
) -> tuple[Path, ParityReport]:
    """Export ``model_path`` to ONNX, embed the metadata and check parity on ``parity_n`` inputs.

    Returns:
        (path of the .onnx file, parity report). Raises CnnlabError if parity fails.
    """
    _require_onnx()
    model, meta = load_model(model_path)
    out = Path(out) if out is not None else output_dir(_model_folder(model_path)) / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, *meta["input_shape"])  # (2, C, H, W): batch 2 so no size-1 specialisation
    with atomic_path(out) as tmp:  # nothing half-written under the final name (kill, full disk, failure)
        try:
            _torch_export(model, example, tmp, opset, exporter)
        except CnnlabError:
            raise
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types; name the model
            raise CnnlabError(f"ONNX export of {meta['architecture']} failed: {type(exc).__name__}: {exc}") from None
        write_metadata(tmp, meta)
    x, source = parity_inputs(meta, parity_n, model_path=model_path)
    report = compare(torch_logits_fn(model), onnx_logits_fn(out), x, source, tolerance=tolerance)
    return out, require(report, f"the ONNX export {out.name}")


__all__ = ["export_onnx", "read_onnx_meta", "onnx_logits_fn", "write_metadata", "INPUT", "OUTPUT"]
