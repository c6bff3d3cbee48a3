"""Data-parallel scaling on this machine: `cnnlab train` as 1 process vs `--nproc N` processes.

Every setting runs the real command in fresh processes on the same data and seed, in rounds
(one run of each setting per round, so a load change hits all settings alike). Reported per
setting: the median training time of one epoch (from the run's history.csv; validation included,
process start and data loading not), the wall time of the whole command, and test accuracy. The
ratio is against the single process with as many threads as the machine has cores, measured in the
same round.

With DDP the global batch is N x the per-process batch, so `--batch-size` is divided by N for the
DDP settings: every setting takes the same optimiser steps on the same global batch.

Run:  python benchmarks/bench_ddp.py [--rounds 3] [--epochs 3] [--nproc 2] [-- extra cnnlab train args]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


def run(settings: dict, base: list[str], out: Path) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(settings["threads"])}
    cmd = [sys.executable, "-m", "cnnlab", "train", *base, "--train.threads", str(settings["threads"])]
    cmd += ["--batch-size", str(settings["batch"]), "--out", str(out), "--no-progress", "--output.plots", "false"]
    if settings["nproc"] > 1:
        cmd += ["--nproc", str(settings["nproc"])]
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"{settings['name']} failed:\n{r.stderr[-3000:]}")
    run_dir = Path(r.stdout.strip().splitlines()[-1].split("run folder: ", 1)[1])
    with open(run_dir / "history.csv") as f:
        epoch_s = [float(row["seconds"]) for row in csv.DictReader(f)]
    acc = json.loads((run_dir / "metrics.json").read_text())["accuracy"]
    return {"epoch_s": statistics.median(epoch_s), "wall_s": wall, "acc": acc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128, help="global batch (per process: this / nproc)")
    ap.add_argument("--data", default="mnist-sample")
    ap.add_argument("--out", default="/tmp/cnnlab-bench-ddp")
    ap.add_argument("extra", nargs="*", help="extra arguments passed to cnnlab train (after --)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    n = args.nproc
    settings = [
        {"name": f"1 process, {cores} threads", "nproc": 1, "threads": cores, "batch": args.batch_size},
        {"name": "1 process, 1 thread", "nproc": 1, "threads": 1, "batch": args.batch_size},
        {"name": f"{n} processes (DDP, gloo), {max(1, cores // n)} thread each", "nproc": n,
         "threads": max(1, cores // n), "batch": args.batch_size // n},
    ]  # fmt: skip
    base = ["--data", args.data, "--epochs", str(args.epochs), "--seed", "0", *args.extra]
    results: dict[str, list[dict]] = {s["name"]: [] for s in settings}
    ratios: dict[str, list[float]] = {s["name"]: [] for s in settings}
    for rnd in range(args.rounds):
        row = {s["name"]: run(s, base, Path(args.out)) for s in settings}
        ref = row[settings[0]["name"]]["epoch_s"]
        for name, res in row.items():
            results[name].append(res)
            ratios[name].append(res["epoch_s"] / ref)
            print(f"round {rnd + 1} {name:40s} epoch {res['epoch_s']:6.2f} s  wall {res['wall_s']:6.1f} s  "
                  f"test acc {res['acc']:.4f}", flush=True)  # fmt: skip
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cores} CPUs, load {load:.1f}, "
        f"data {args.data}, {args.epochs} epochs, global batch {args.batch_size}, {args.rounds} rounds"
    )
    print("| setting | epoch time (median of rounds) | x single process | wall time | test accuracy |")
    print("|---|--:|--:|--:|--:|")
    for s in settings:
        res = results[s["name"]]
        print(
            f"| {s['name']} | {statistics.median(r['epoch_s'] for r in res):.2f} s "
            f"| {statistics.median(ratios[s['name']]):.2f} | {statistics.median(r['wall_s'] for r in res):.1f} s "
            f"| {statistics.mean(r['acc'] for r in res):.4f} |"
        )


if __name__ == "__main__":
    main()
