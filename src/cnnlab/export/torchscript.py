"""Export a cnnlab model file to TorchScript, checked for parity.

A TorchScript file runs in C++ (libtorch) or Python without the model's source code. The model is
traced on a batch of 2 normalised inputs (B, C, H, W); the batch axis stays dynamic because our
networks never bake the batch size into shapes (``flatten(1)``), and the parity check runs the
trace at other batch sizes to prove it. The class names and preprocessing travel in the archive as
``_extra_files["cnnlab.json"]``. ``torch.jit.trace`` is deprecated in recent PyTorch in favour of
``torch.export``, but it still produces the most widely loadable file, so we keep it and silence the
warning.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CnnlabError
from cnnlab.export.parity import ParityReport, compare, parity_inputs, public_meta, require, torch_logits_fn
from cnnlab.files.atomic import atomic_path
from cnnlab.runs.builtin import output_dir
from cnnlab.runs.model_file import _model_folder, load_model

EXTRA = "cnnlab.json"


def trace(model: torch.nn.Module, input_shape: list[int]) -> torch.jit.ScriptModule:
    """Trace ``model`` (eval mode) on zeros of shape (2, C, H, W)."""
    example = torch.zeros(2, *input_shape)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation + tracer warnings
        return torch.jit.trace(model.eval(), example, check_trace=False)


def export_torchscript(
    model_path: str | Path, out: str | Path | None = None, *, parity_n: int = 64, tolerance: float = 1e-4
) -> tuple[Path, ParityReport]:
    """Trace ``model_path`` to a TorchScript file with its metadata and check parity on ``parity_n`` inputs."""
    model, meta = load_model(model_path)
    out = Path(out) if out is not None else output_dir(_model_folder(model_path)) / "model.torchscript.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        scripted = trace(model, meta["input_shape"])
    except Exception as exc:  # noqa: BLE001 - the tracer raises many types; name the model
        raise CnnlabError(f"TorchScript export of {meta['architecture']} failed: {type(exc).__name__}: {exc}") from None
    with warnings.catch_warnings(), atomic_path(out) as tmp:  # no half-written file under the final name
        warnings.simplefilter("ignore")  # torch.jit.save's deprecation notice
        torch.jit.save(scripted, str(tmp), _extra_files={EXTRA: json.dumps(public_meta(meta))})
    loaded, _ = load_torchscript(out)
    x, source = parity_inputs(meta, parity_n, model_path=model_path)
    report = compare(torch_logits_fn(model), torch_logits_fn(loaded), x, source, tolerance=tolerance)
    return out, require(report, f"the TorchScript export {out.name}")


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Load a file written by :func:`export_torchscript`: (module in eval mode, cnnlab metadata).

    Loading TorchScript runs code chosen by the file's author (a scripted ``forward`` can read and
    write files), so :func:`cnnlab.serve.predictor.load_for_inference` calls this only when the user
    opted in with ``--trust-torchscript``; the export's own parity check loads the file it just wrote.
    """
    extra = {EXTRA: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as exc:  # noqa: BLE001 - torch.jit raises many types for a foreign or damaged file
            raise CnnlabError(f"{path} is not a TorchScript file: {exc}") from None
    if not extra[EXTRA]:
        raise CnnlabError(f"{path} has no {EXTRA} (was it exported by 'cnnlab export'?)")
    raw = extra[EXTRA]
    try:
        meta = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        meta = None
    if not isinstance(meta, dict):
        raise CnnlabError(f"the {EXTRA} inside {path} is not a JSON object; re-export the model")
    return module.eval(), meta


__all__ = ["export_torchscript", "load_torchscript", "trace", "EXTRA"]
