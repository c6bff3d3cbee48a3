"""Checkpoints that survive a crash and load without unpickling arbitrary objects.

Saving writes to a temporary file in the same folder, flushes and fsyncs it, then renames it over
the target with ``os.replace`` (atomic on POSIX and Windows): a run killed mid-save leaves the
previous checkpoint intact. Loading uses ``torch.load(weights_only=True)``, so a checkpoint holds
only tensors, numbers, strings, lists and dicts (RNG states are stored as tensors).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CnnlabError

TMP_SUFFIX = ".tmp"  # atomic_save's temporary files are ".<name>.<random>.tmp" next to the target


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, tmp):  # name the checkpoint, not the temp file
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        if isinstance(exc, RuntimeError) and "write" in str(exc).lower():  # torch.save's writer wraps the OSError
            raise OSError(getattr(exc.__context__, "errno", errno.EIO), _reason(exc), str(path)) from None
        raise
    # Make the rename itself durable (the directory entry); not supported on every platform.
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the ``.<name>.<random>.tmp`` files that :func:`atomic_save` leaves when it is killed mid-write.

    Call only while no other process writes checkpoints into ``folder`` (the trainer holds the run lock).
    """
    folder = Path(folder)
    stale = sorted(p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file()) if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


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
