"""`cnnlab train` with no arguments (seed CNN, bundled MNIST sample): wall time and test accuracy over seeds.

Each seed runs the real command in a fresh process (imports, data loading and plots included) and
reads the test accuracy back from the run's metrics.json. Prints mean +/- std (sample std).

Run:  python benchmarks/bench_default_train.py [--seeds 0 1 2] [--out /tmp/cnnlab-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="/tmp/cnnlab-bench-default")
    ap.add_argument("extra", nargs="*", help="extra arguments passed to cnnlab train (after --)")
    args = ap.parse_args()
    times, accs = [], []
    for seed in args.seeds:
        cmd = [
            sys.executable,
            "-m",
            "cnnlab",
            "train",
            "--seed",
            str(seed),
            "--out",
            args.out,
            "--no-progress",
            *args.extra,
        ]
        start = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        elapsed = time.perf_counter() - start
        if r.returncode != 0:
            sys.exit(f"seed {seed} failed:\n{r.stderr}")
        run_dir = Path(r.stdout.strip().splitlines()[-1].split("run folder: ", 1)[1])
        acc = json.loads((run_dir / "metrics.json").read_text())["accuracy"]
        times.append(elapsed)
        accs.append(acc)
        print(f"seed {seed}: {elapsed:6.1f} s  test accuracy {acc:.4f}  ({run_dir})", flush=True)
    print(
        f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, command: "
        f"cnnlab train --seed S {' '.join(args.extra)}"
    )

    def sd(v):
        return statistics.stdev(v) if len(v) > 1 else 0.0

    print(f"wall time     {statistics.mean(times):.1f} +/- {sd(times):.1f} s")
    print(f"test accuracy {100 * statistics.mean(accs):.2f} +/- {100 * sd(accs):.2f} %  over seeds {args.seeds}")


if __name__ == "__main__":
    main()
