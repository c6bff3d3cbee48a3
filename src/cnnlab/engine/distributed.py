"""Multi-process data-parallel training through torchrun and DistributedDataParallel.

``cnnlab train --nproc N ...`` (or ``torchrun --nproc_per_node N -m cnnlab train ...``) starts N
processes; torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT, and
:func:`init_distributed` joins the process group (gloo on CPU, NCCL on GPU, one GPU per local rank).
Each process keeps the whole in-memory dataset and trains on its shard of every epoch's order
(``order[rank::world]``, padded by wrap-around to equal length, as ``DistributedSampler`` does);
DDP averages the gradients in backward, so one step equals a single-process step on the combined
batch. All ranks share the data generator's seed: they draw the same epoch order and the same
augmentation parameters (applied to different images), which keeps every rank's random state equal
to rank 0's — the state rank 0 saves — so resume under DDP needs nothing more. Rank 0 alone writes
the run folder, logs and checkpoints; training metrics are averaged over ranks, and validation
runs on the full split on every rank (identical results, so early stopping agrees everywhere).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def env_info() -> DistInfo:
    """Rank and world size from torchrun's environment variables (1 process when unset)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group when started by torchrun; returns the info and this rank's device."""
    info = env_info()
    if not info.active:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def broadcast(obj: Any, info: DistInfo) -> Any:
    """Rank 0's value of ``obj`` on every rank (e.g. the run folder rank 0 created)."""
    if not info.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(row: dict[str, float], keys: tuple[str, ...], info: DistInfo) -> dict[str, float]:
    """Average ``row[k]`` for ``k`` in ``keys`` over ranks (every shard has the same size)."""
    if not info.active:
        return row
    present = [k for k in keys if k in row]
    t = torch.tensor([float(row[k]) for k in present], dtype=torch.float64)
    dist.all_reduce(t)
    return {**row, **{k: float(v) / info.world for k, v in zip(present, t.tolist())}}


def wrap_model(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """The module training calls: DDP around ``model`` when distributed, else ``model`` itself."""
    if not info.active:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shutdown(info: DistInfo) -> None:
    if info.active and dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, argv: list[str], torchrun_args: list[str] | None = None) -> int:
    """Re-run ``cnnlab <argv>`` as ``nproc`` processes through ``python -m torch.distributed.run``.

    ``torchrun_args`` pass multi-node settings through (``--nnodes 2 --node_rank 0 --rdzv_endpoint
    host:29500``); without them a free local port is used.
    """
    extra = list(torchrun_args or [])
    if not any(a.startswith(("--rdzv", "--master", "--nnodes")) for a in extra):
        extra += ["--standalone"]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", *extra, "-m", "cnnlab", *argv]
    return subprocess.call(cmd)
