"""MNIST time-to-accuracy: ``configs/mnist_fast.yaml`` vs seed 001's tutorial recipe, in one run.

Each measurement is a fresh ``cnnlab train`` process, timed from its start (interpreter start,
imports, data loading and the final test evaluation included) to its exit; a run counts as having
reached the target when its test accuracy (``metrics.json``) is at least ``--target``. The fast
recipe runs once per seed; the figure is the mean wall time over seeds.

Seed 001's recipe (``configs/mnist_cnn_seed001.yaml``: MNIST_CNN, Adam 1e-3, batch 64, 3 epochs)
needs minutes. ``--baseline full`` runs it like the others; ``--baseline estimate`` (the default)
times its first ``--estimate-batches`` training steps in-process and extrapolates to 3 epochs of
938 steps, plus the start-up time measured in the fast runs — printed as an estimate.

Run:  python benchmarks/bench_mnist_time.py --data-root ../shared/data [--seeds 0 1 2] [--baseline full]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed_train(config: str, root: str, seed: int, out: Path, extra: list[str]) -> tuple[float, float]:
    """Wall seconds of one ``cnnlab train`` process and its test accuracy."""
    name = f"{Path(config).stem}-s{seed}"
    cmd = [sys.executable, "-m", "cnnlab", "train", "--config", config, "--data-root", root, "--seed", str(seed)]
    cmd += ["--out", str(out), "--name", name, "--no-progress", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    metrics = json.loads((out / name / "metrics.json").read_text())
    return wall, float(metrics["accuracy"])


def estimate_seed001(root: str, batches: int) -> float:
    """Seconds per training step of seed 001's recipe, timed in-process on real MNIST batches."""
    import torch

    from cnnlab.data.datasets import load_dataset
    from cnnlab.models import create_model

    ds = load_dataset("mnist", root=root)
    x = torch.from_numpy(ds.train_images[: 64 * (batches + 2)]).permute(0, 3, 1, 2).float().div(255)
    y = torch.from_numpy(ds.train_labels[: 64 * (batches + 2)]).long()
    model = create_model("mnist_cnn", num_classes=10, in_channels=1, input_size=28)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    times = []
    for i in range(batches + 2):
        xb, yb = x[i * 64 : (i + 1) * 64], y[i * 64 : (i + 1) * 64]
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[2:])  # the first two steps warm up the allocator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--config", default="configs/mnist_fast.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--baseline", choices=["full", "estimate", "skip"], default="estimate")
    ap.add_argument("--estimate-batches", type=int, default=30)
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more flags for the fast runs")
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench_mnist_"))
    fast = []
    for seed in args.seeds:
        wall, acc = timed_train(args.config, args.data_root, seed, out, args.extra)
        fast.append((wall, acc))
        print(f"fast recipe seed {seed}: {wall:.1f} s, test accuracy {acc:.4f}", flush=True)
    mean_fast = statistics.mean(w for w, _ in fast)
    reached = sum(acc >= args.target for _, acc in fast)
    print(
        f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    print(f"  {args.config}: mean {mean_fast:.1f} s over {len(fast)} seeds; {reached}/{len(fast)} reached target")
    print(f"  accuracies: {', '.join(f'{a:.4f}' for _, a in fast)}")
    if args.baseline == "full":
        wall, acc = timed_train("configs/mnist_cnn_seed001.yaml", args.data_root, args.seeds[0], out, [])
        print(f"  seed 001 recipe: {wall:.1f} s, test accuracy {acc:.4f}")
        print(f"  speed-up: {wall / mean_fast:.1f}x")
    elif args.baseline == "estimate":
        per_step = estimate_seed001(args.data_root, args.estimate_batches)
        est = 3 * 938 * per_step
        print(f"  seed 001 recipe (estimate): {per_step * 1000:.0f} ms/step x 3 x 938 steps = {est:.0f} s of training")
        print(f"  speed-up (training time of seed 001 / whole fast run): >= {est / mean_fast:.1f}x")


if __name__ == "__main__":
    main()
