"""Where an epoch of ``configs/cifar10_fast.yaml`` goes on this machine: each part of a step, timed.

The recipe is built the way ``cnnlab train`` builds it (``cnnlab.workflow``: config, data, the
whitening initialisation, Muon, the schedule), then ``--steps`` training steps are taken with a
clock around each part: the batch (gather, crop/flip, normalisation; taken on the training thread
here, where a real run prepares it in a background thread that shares the same cores), the forward
pass and loss under bf16 autocast, the backward pass, Muon's Newton-Schulz iterations, the rest of
the optimiser step, and the schedule. Each part is reported in seconds per step and as a share of
an epoch (50,000 images / batch 2,000 = 25 steps). The test scoring at the end of a run is timed
too (10,000 images, one view and the recipe's six views), and the Newton-Schulz iterations alone
at 3 and at 5 steps on the recipe's filter shapes. Nothing here is written to a run folder.

Run:  python benchmarks/profile_cifar10_fast.py --data-root ../shared/data [--steps 6] [--config FILE] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch
from _bench import append_row  # noqa: E402 - benchmarks/ is on sys.path when run as a script

import cnnlab.engine.optim as optim_mod
from cnnlab.api import make_config
from cnnlab.data.tta import TTA, view_logits
from cnnlab.engine.loop import autocast
from cnnlab.workflow import build_parts, load_data, start_session

REPO = Path(__file__).resolve().parents[1]
TIMES: dict[str, float] = defaultdict(float)  # wall seconds per part
CPU: dict[str, float] = defaultdict(float)  # CPU seconds per part (all threads): less stretched by other jobs


@contextmanager
def clock(part: str):
    start, cpu = time.perf_counter(), time.process_time()
    yield
    TIMES[part] += time.perf_counter() - start
    CPU[part] += time.process_time() - cpu


def timed_orthogonalise(inner):
    """``orthogonalise`` with its time added to the Newton-Schulz part (the optimiser calls it by name)."""

    def run(g, steps: int = 5):
        with clock("newton-schulz"):
            return inner(g, steps)

    return run


def train_steps(parts, loader, steps: int, warmup: int, amp: str) -> None:
    model, opt, sched, loss_fn = parts.model, parts.optimizer, parts.schedule, parts.loss_fn
    model.train()
    batches = iter(loader)
    for i in range(warmup + steps):
        if i == warmup:
            TIMES.clear()
            CPU.clear()
        with clock("batch (gather, augment, normalise)"):
            x, y = next(batches)
        with clock("forward + loss"), autocast(x.device, amp):
            loss = loss_fn(model(x), y)
        with clock("backward"):
            loss.backward()
        with clock("optimiser step (all)"):
            opt.step()
            opt.zero_grad(set_to_none=True)
        with clock("schedule"):
            sched.step_batch()


def score_test(model, loader, tta: str, amp: str, images: int) -> float:
    """Seconds to score the first ``images`` test images with ``tta``'s views, scaled to the whole test set."""
    model.eval()
    views = TTA.create(tta)
    start, done = time.perf_counter(), 0
    with torch.inference_mode():
        for x, _ in loader:
            with autocast(x.device, amp):
                view_logits(model, x, views)
            done += len(x)
            if done >= images:
                break
    return (time.perf_counter() - start) * loader.num_samples / done


def newton_schulz_alone(model, repeats: int = 3) -> dict[str, float]:
    """Seconds for one optimiser step's orthogonalisations at 3 and 5 iterations (median of ``repeats``)."""
    shapes = [p.shape for p in model.parameters() if p.ndim == 4 and p.requires_grad]
    grads = [torch.randn(s).reshape(s[0], -1) for s in shapes]
    out = {}
    for k in (3, 5):
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            for g in grads:
                optim_mod.orthogonalise(g, k)
            runs.append(time.perf_counter() - start)
        out[f"ns{k}_s"] = sorted(runs)[len(runs) // 2]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--config", default="configs/cifar10_fast.yaml")
    ap.add_argument("--steps", type=int, default=6, help="timed training steps (after --warmup)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, help="torch threads (default: the recipe's train.threads)")
    ap.add_argument("--test-images", type=int, default=10_000, help="test images to score (the time is scaled up)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cifar10_profile.jsonl"))
    args = ap.parse_args()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    threads = {"train.threads": args.threads} if args.threads else {}
    cfg = make_config(str(REPO / args.config), threads, data_root=args.data_root, epochs=1)
    session = start_session(cfg, log=lambda s: None)
    _, data = load_data(session)
    data.train.prefetch = False  # the batch is timed on its own; a real run overlaps it in a thread
    parts = build_parts(session, data)
    setup_s = time.perf_counter() - t0
    original = optim_mod.orthogonalise
    optim_mod.orthogonalise = timed_orthogonalise(original)
    amp = session.cfg.train.amp
    train_steps(parts, data.train, args.steps, args.warmup, amp)
    per_step = {k: v / args.steps for k, v in TIMES.items()}
    cpu_per_step = {k: v / args.steps for k, v in CPU.items()}
    optim_mod.orthogonalise = original
    steps_per_epoch = len(data.train)
    step_s = sum(v for k, v in per_step.items() if k != "newton-schulz")
    row = {
        "config": args.config,
        "steps": args.steps,
        "steps_per_epoch": steps_per_epoch,
        "setup_s": setup_s,
        "step_s": step_s,
        "epoch_s_estimate": step_s * steps_per_epoch,
        "per_step_s": per_step,
        "share_of_step": {k: v / step_s for k, v in per_step.items()},
        "cpu_per_step_s": cpu_per_step,
        "test_1view_s": score_test(parts.model, data.test, "none", amp, args.test_images),
        f"test_{session.cfg.train.tta}_s": score_test(
            parts.model, data.test, session.cfg.train.tta, amp, args.test_images
        ),
        **newton_schulz_alone(parts.model),
        "threads": torch.get_num_threads(),
        "load": load,
    }
    print(json.dumps(append_row(Path(args.out), row), indent=1))


if __name__ == "__main__":
    main()
