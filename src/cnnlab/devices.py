"""``--device`` names to torch devices, in one place: ``auto`` is the GPU when there is one, else the CPU.

A leaf module (torch is imported when a name is resolved), so every layer may use it.
"""

from __future__ import annotations

import os
from typing import Any

from cnnlab.errors import CnnlabError


def resolve_device(name: Any = "auto"):
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` (or a torch.device) -> torch.device; CnnlabError when
    CUDA is asked for but absent, or the name is unknown."""
    import torch

    if isinstance(name, torch.device):
        return name
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnlabError(f"device {name!r} was asked for but CUDA is not available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise CnnlabError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


def spare_core() -> bool:
    """Whether this process may run on a CPU core that none of torch's intra-op threads uses (a
    process started with ``OMP_NUM_THREADS=1`` on two cores has one): work on a background thread
    there costs the training nothing, while on a core torch uses every parallel region waits for it."""
    import torch

    return available_cores() > torch.get_num_threads()


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
