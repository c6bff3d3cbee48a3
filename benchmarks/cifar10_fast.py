"""CIFAR-10 on a CPU: ``configs/cifar10_fast.yaml`` against 20 epochs of the seed recipe, in one run.

Issue 18, item 3: the speed recipe must reach >= 90 % test accuracy (mean of 3 seeds) in no more
wall time than 20 epochs of ``configs/seed_cnn_cifar10.yaml`` take on the same machine. The seed
recipe is run for ``--seed-epochs`` epochs (2 by default) and its budget is 20 x its mean epoch time
(the ``seconds`` column of its history.csv: training plus the validation pass); the speed recipe is
timed by the wall clock around the whole command (interpreter start, imports, data, training, the
test evaluation with test-time augmentation, the run folder). Both read the same cached copy of the
data: the first command that loads CIFAR-10 (the seed recipe's) decodes the JPEGs once, before it trains.

Each result is appended to a JSON-lines file at once; ``--resume`` skips what is there.

Run:  python benchmarks/cifar10_fast.py --data-root ../shared/data [--seeds 0 1 2] [--config FILE] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import add_result_args, append_row, open_results, source_env  # noqa: E402 - benchmarks/ is on sys.path when run as a script

from cnnlab.runs.folder import read_history_csv

REPO = Path(__file__).resolve().parents[1]
CPU_SECONDS: list[float] = []  # CPU seconds (user + system, all threads) of each train() child, in order
SEED_CONFIG = "configs/seed_cnn_cifar10.yaml"
SEED_EPOCHS = 20  # the seed recipe's length: the budget is 20 of its epochs


def train(config: str, root: str, seed: int, out: Path, name: str, *extra: str) -> tuple[float, Path]:
    """``cnnlab train`` in a fresh process; (wall seconds, run folder). Its CPU seconds go to ``CPU_SECONDS``:
    on a shared machine other jobs stretch the wall time much more than the work the process does."""
    cmd = [sys.executable, "-m", "cnnlab", "train", "--config", config, "--data-root", root, "--seed", str(seed)]
    cmd += ["--out", str(out), "--name", name, "--no-progress", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=source_env())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_SECONDS.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-1500:]}\n{proc.stderr[-2500:]}")
    return wall, max(out.glob(f"{name}*"), key=lambda p: p.stat().st_mtime)


def measure_seed_recipe(args, tmp: Path) -> dict:
    wall, run_dir = train(SEED_CONFIG, args.data_root, 0, tmp, "seed-recipe", "--epochs", str(args.seed_epochs))
    epochs = read_history_csv(run_dir / "history.csv")
    per_epoch = statistics.mean(e["seconds"] for e in epochs)
    return {
        "recipe": "seed",
        "seed": 0,
        "wall_s": wall,
        "cpu_s": CPU_SECONDS[-1],
        "epochs": len(epochs),
        "epoch_s": per_epoch,
        "budget_s": SEED_EPOCHS * per_epoch,
        "val_acc": [e.get("val_acc") for e in epochs],
    }


def measure_fast(args, seed: int, tmp: Path) -> dict:
    extra = ["--epochs", str(args.epochs)] if args.epochs else []
    extra += ["--set", f"train.threads={args.threads}"] if args.threads else []
    wall, run_dir = train(args.config, args.data_root, seed, tmp, f"fast-s{seed}", *extra)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    epochs = read_history_csv(run_dir / "history.csv")
    return {
        "recipe": "fast",
        "config": args.config,
        "threads": args.threads,
        "seed": seed,
        "wall_s": wall,
        "cpu_s": CPU_SECONDS[-1],
        "accuracy": float(metrics["accuracy"]),
        "epochs": len(epochs),
        "epoch_s": [round(e["seconds"], 1) for e in epochs],
        "train_acc": epochs[-1].get("train_acc"),
    }


def record(measure, out: Path, *args) -> dict:
    """Run ``measure(*args)`` and append its row, with the load averages before and after it."""
    load = os.getloadavg()[0]
    measured = measure(*args)
    # the 15-minute load average at the end: about the whole run's, other jobs' work included
    row = append_row(out, {**measured, "load": load, "load_15min_after": os.getloadavg()[2]})
    print(json.dumps(row), flush=True)
    return row


def summarise(rows: list[dict], target: float) -> None:
    seed = [r for r in rows if r["recipe"] == "seed"]
    fast = [r for r in rows if r["recipe"] == "fast"]
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
    if seed:
        s = seed[-1]
        print(f"seed recipe: {s['epoch_s']:.1f} s per epoch over {s['epochs']} epochs -> budget {s['budget_s']:.0f} s")
    if fast:
        accs, walls = [r["accuracy"] for r in fast], [r["wall_s"] for r in fast]
        print(
            f"speed recipe, seeds {[r['seed'] for r in fast]}: accuracy {100 * statistics.mean(accs):.2f} ± "
            f"{100 * sd(accs):.2f} % (min {100 * min(accs):.2f} %, target {100 * target:.0f} %), "
            f"wall {statistics.mean(walls):.0f} ± {sd(walls):.0f} s"
        )
        if seed:
            print(f"speed recipe / budget: {statistics.mean(walls) / seed[-1]['budget_s']:.2f}x (target <= 1.00x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--config", default="configs/cifar10_fast.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seed-epochs", type=int, default=2, help="epochs of the seed recipe to time")
    ap.add_argument("--epochs", type=int, help="train the speed recipe this many epochs instead of its own")
    ap.add_argument("--threads", type=int, help="the speed recipe's train.threads (default: the recipe's own)")
    ap.add_argument("--target", type=float, default=0.90)
    add_result_args(ap, "cifar10_fast.jsonl")
    args = ap.parse_args()
    out, rows = open_results(args.out, args.resume)
    done = {(r["recipe"], r["seed"]) for r in rows}
    with tempfile.TemporaryDirectory() as tmp:
        if ("seed", 0) not in done:
            rows.append(record(measure_seed_recipe, out, args, Path(tmp)))
        for seed in args.seeds:
            if ("fast", seed) not in done:
                rows.append(record(measure_fast, out, args, seed, Path(tmp)))
    print(f"machine: {os.cpu_count()} CPUs; results in {out}")
    summarise(rows, args.target)


if __name__ == "__main__":
    main()
