"""The self-contained model file: ``weights.safetensors`` + ``model.json`` in one folder.

``model.json`` says everything needed to rebuild and use the network without the training code
or pickle: the registered architecture name and its keyword arguments, class names and order,
input shape, normalisation (mean/std per channel, on [0,1] pixels), the decoding rule version,
training metrics and library versions. ``load_model`` rebuilds the architecture from the registry
and loads the tensors with safetensors (which cannot execute code).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from cnnlab.errors import CnnlabError

FORMAT_VERSION = 1
WEIGHTS, META = "weights.safetensors", "model.json"


def save_model_file(folder: str | Path, model: torch.nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``folder/weights.safetensors`` and ``folder/model.json``. ``meta`` must hold
    ``architecture``, ``kwargs``, ``classes``, ``input_shape`` ([C, H, W]), ``mean`` and ``std``."""
    for key in ("architecture", "kwargs", "classes", "input_shape", "mean", "std"):
        if key not in meta:
            raise ValueError(f"model meta lacks {key!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # safetensors wants contiguous, unshared tensors; channels_last weights are converted back.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "cnnlab", "version": str(FORMAT_VERSION)})
    full = {
        "format": "cnnlab-model",
        "format_version": FORMAT_VERSION,
        **meta,
        "versions": {"torch": torch.__version__, **meta.get("versions", {})},
    }
    (folder / META).write_text(json.dumps(full, indent=2) + "\n")
    return folder


def read_meta(path: str | Path) -> dict[str, Any]:
    folder = _model_folder(path)
    try:
        return json.loads((folder / META).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CnnlabError(f"{folder / META} cannot be read: {exc}") from None


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
        raise CnnlabError(
            f"{path} is not a cnnlab model: expected {META} and {WEIGHTS} in it (or in its model/ folder)"
        )
    return p


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the network described by ``model.json`` and load its weights. Returns (model in eval mode, meta)."""
    from cnnlab.models import create_model

    folder = _model_folder(path)
    meta = read_meta(folder)
    c, h, _ = meta["input_shape"]
    model = create_model(
        meta["architecture"], num_classes=len(meta["classes"]), in_channels=c, input_size=h, **meta["kwargs"]
    )
    state = load_file(str(folder / WEIGHTS))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CnnlabError(
            f"weights in {folder} do not match {meta['architecture']}: missing {result.missing_keys}, "
            f"unexpected {result.unexpected_keys}"
        )
    return model.to(device).eval(), meta
