"""Start-up of the commands that list or count, against ``python -c "import torch"``, in one run.

Issue 30's target: ``cnnlab models`` (and any command that lists or counts) within 1 s of what
importing torch alone takes on the same machine. Every command is a fresh process timed by the wall
clock from just before it starts to its exit; the commands run in turn, ``--repeats`` rounds, so a
change of load hits them all, and each command's median is printed beside its difference from
``import torch``'s median of the same rounds.

Run:  python benchmarks/bench_commands.py [--repeats 5] [--json benchmarks/results/commands.jsonl]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from _bench import append_row, cpu_model, source_env  # noqa: E402 - benchmarks/ is on sys.path when run as a script

COMMANDS = {
    "import torch": ["-c", "import torch"],
    "cnnlab --help": ["-m", "cnnlab", "--help"],
    "cnnlab models": ["-m", "cnnlab", "models"],
    "cnnlab models --markdown": ["-m", "cnnlab", "models", "--markdown"],
    "cnnlab models resnet --classes 100": ["-m", "cnnlab", "models", "resnet", "--classes", "100"],
    "cnnlab summary seed_cnn": ["-m", "cnnlab", "summary", "seed_cnn"],
    "cnnlab summary resnet18_cifar": ["-m", "cnnlab", "summary", "resnet18_cifar"],
    "cnnlab datasets": ["-m", "cnnlab", "datasets"],
    "cnnlab calc conv --in 32 --k 3": ["-m", "cnnlab", "calc", "conv", "--in", "32", "--k", "3", "--cin", "3"],
}


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=source_env())
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="append the medians as one JSON line to this file")
    args = ap.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    load = os.getloadavg()[0]
    for _ in range(args.repeats):
        for name, argv in COMMANDS.items():
            times[name].append(wall(argv))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    base = medians["import torch"]
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, load {load:.1f} at start; medians of {args.repeats} rounds")
    for name, m in medians.items():
        print(f"{name:<36} {m:6.2f} s   {m - base:+6.2f} s vs import torch")
    if args.json:
        append_row(args.json, {"load": load, "repeats": args.repeats, "median_s": medians})


if __name__ == "__main__":
    main()
