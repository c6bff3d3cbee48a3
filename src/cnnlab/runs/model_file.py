"""The self-contained model file: ``weights.safetensors`` + ``model.json`` in one folder.

``model.json`` says everything needed to rebuild and use the network without the training code
or pickle: the registered architecture name and its keyword arguments, class names and order,
input shape, normalisation (mean/std per channel, on [0,1] pixels), the decoding rule version,
training metrics and library versions. ``load_model`` rebuilds the architecture from the registry
and loads the tensors with safetensors (which cannot execute code).

Both files are written by the shared atomic writer (temporary file, fsync, rename, mode from the
umask), so a killed process leaves the previous file or the new one, never a half-written one;
the safetensors header is written with sorted metadata keys, so the same weights give the same
bytes in every process. A damaged or tampered file (truncated tensors, non-object JSON, missing
keys, kwargs the builder refuses, shapes that do not fit) is refused with a
:class:`~cnnlab.errors.CnnlabError` naming the file.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic
from cnnlab.readers import read_json
from cnnlab.runs.folder import refuse_cv_parent
from cnnlab.runs.meta import META, REQUIRED, check_model_meta

FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"


def safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """The safetensors file for ``state`` with its header's metadata in sorted key order.

    The library serialises metadata from a hash map, whose order changes between processes; the
    header (8-byte length + JSON, space-padded to 8 bytes) is rewritten here with the same tensor
    entries and offsets, so equal weights give equal bytes.
    """
    raw = save(state, metadata=metadata)
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    ordered = {"__metadata__": header.pop("__metadata__"), **dict(sorted(header.items()))}
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


def save_model_file(folder: str | Path, model: torch.nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``folder/weights.safetensors`` and ``folder/model.json``, each atomically. ``meta`` must
    hold ``architecture``, ``kwargs``, ``classes``, ``input_shape`` ([C, H, W]), ``mean`` and ``std``."""
    for key in REQUIRED:
        if key not in meta:
            raise ValueError(f"model meta lacks {key!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # safetensors wants contiguous, unshared tensors; channels_last weights are converted back.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    atomic.write_bytes(folder / WEIGHTS, safetensors_bytes(state, {"format": "cnnlab", "version": str(FORMAT_VERSION)}))
    full = {
        "format": "cnnlab-model",
        "format_version": FORMAT_VERSION,
        **meta,
        "versions": {"torch": torch.__version__, **meta.get("versions", {})},
    }
    atomic.write_bytes(folder / META, (json.dumps(full, indent=2) + "\n").encode())
    return folder


def read_meta(path: str | Path) -> dict[str, Any]:
    """The parsed ``model.json`` of a model (or run) folder; a file that is not a JSON object is an error."""
    return read_json(_model_folder(path) / META)  # size, nesting and top-level object checked (cnnlab.readers)


def _model_folder(path: str | Path) -> Path:
    """Accept a model folder, a run folder (uses run/model) or a path to model.json/weights."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    if (p / "model" / META).is_file():
        p = p / "model"
    if (p / "weights.npz").is_file():
        raise CnnlabError(
            f"{path} was trained by the NumPy engine (weights.npz): this needs a PyTorch model; evaluate, "
            "interpret, report, predict and serve take NumPy runs, or train it with 'cnnlab train'"
        )
    if not (p / META).is_file() or not (p / WEIGHTS).is_file():
        refuse_cv_parent(p)
        raise CnnlabError(
            f"{path} is not a cnnlab model: expected {META} and {WEIGHTS} in it (or in its model/ folder)"
        )
    return p


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the network described by ``model.json`` and load its weights. Returns (model in eval mode, meta)."""
    folder = _model_folder(path)
    meta = read_meta(folder)
    check_model_meta(meta, folder / META)
    model = _build(meta, folder / META)
    try:
        state = load_file(str(folder / WEIGHTS))
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError...: truncated, empty or foreign bytes
        raise CnnlabError(
            f"{folder / WEIGHTS} is damaged or not a safetensors file ({str(exc)[:200]}); re-save or retrain the model"
        ) from None
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that do not fit (e.g. more classes listed than the weights give)
        raise CnnlabError(
            f"weights in {folder} do not fit {meta['architecture']} with {len(meta['classes'])} classes and input "
            f"{meta['input_shape']}: {str(exc).splitlines()[-1].strip()[:300]}"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise CnnlabError(
            f"weights in {folder} do not match {meta['architecture']}: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return model.to(device).eval(), meta


def _build(meta: dict[str, Any], where: Path) -> torch.nn.Module:
    from cnnlab.models import create_model

    c, h, _ = meta["input_shape"]
    try:
        return create_model(
            meta["architecture"], num_classes=len(meta["classes"]), in_channels=c, input_size=h, **meta["kwargs"]
        )
    except CnnlabError as exc:
        raise CnnlabError(f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a builder refusing tampered kwargs raises TypeError, ValueError...
        raise CnnlabError(
            f"{where}: {meta['architecture']} cannot be built from its 'kwargs' ({type(exc).__name__}: "
            f"{str(exc)[:200]}); fix them or re-save the model"
        ) from None
