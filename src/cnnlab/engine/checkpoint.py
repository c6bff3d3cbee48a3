"""Checkpoints that survive a crash and load without unpickling arbitrary objects.

Saving goes through the shared atomic writer (:mod:`cnnlab.files.atomic`: a temporary file in the
same folder, fsynced, renamed over the target, mode from the umask): a run killed mid-save leaves
the previous checkpoint intact. Loading uses ``torch.load(weights_only=True)``, so a checkpoint holds
only tensors, numbers, strings, lists and dicts (RNG states are stored as tensors).
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` through the shared atomic writer (temp file + fsync + rename)."""
    path = Path(path)
    try:
        with atomic.atomic_write(path) as f:
            torch.save(obj, f)
    except RuntimeError as exc:
        if "write" in str(exc).lower():  # torch.save's writer wraps the OSError (a full disk)
            raise OSError(getattr(exc.__context__, "errno", errno.EIO), _reason(exc), str(path)) from None
        raise


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files that a checkpoint write killed mid-way left in ``folder``.

    Call only while holding the run lock: no other process writes checkpoints into ``folder`` then,
    so every temporary there is stale (those of older cnnlab versions, which carry no PID, too).
    """
    return atomic.remove_stale_temps(folder, owned=True)


def _reason(exc: BaseException) -> str:
    inner = exc.__context__
    return getattr(inner, "strerror", None) or str(exc).splitlines()[0]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`atomic_save` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt or foreign file: say which and why
        raise CnnlabError(f"checkpoint {path} cannot be loaded ({type(exc).__name__}: {exc})") from None


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    """All random states that influence training, as tensors."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    for name, gen in generators.items():
        state[f"gen.{name}"] = gen.get_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor], generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
    for name, gen in generators.items():
        gen.set_state(state[f"gen.{name}"])


def all_finite(module: torch.nn.Module) -> bool:
    """True when every parameter and buffer is finite (checked before any checkpoint is written)."""
    return all(
        bool(torch.isfinite(t).all()) for t in [*module.parameters(), *module.buffers()] if t.is_floating_point()
    )
