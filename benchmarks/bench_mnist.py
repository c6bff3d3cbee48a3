"""MNIST time to 99 %: ``configs/mnist_fast.yaml`` vs plain PyTorch scripts vs seed 001's recipe, one run.

The figures of issues 18 and 30: ``cnnlab train --config configs/mnist_fast.yaml`` must reach >= 99.0 %
test accuracy after one epoch for every seed, in no more time than the leanest plain script
(``benchmarks/mnist_lean.py``: tensors in memory, batch 128, one shift per batch) takes in the same run
(ratio ours / lean <= 1.0) and, as the recipe trains under bf16 autocast, the same script under bf16
(``lean-bf16``: ``mnist_lean.py ROOT SEED bf16``, ``--skip-lean-bf16`` leaves it out);
``benchmarks/mnist_plain.py`` (per-image shifts, the slower reference of
issue 18) runs beside them, and seed 001's recipe (``benchmarks/mnist_seed001.py``, trained until it
reaches the target) must take >= 13x ours.

Every measurement is a fresh process timed by the wall clock from just before it starts to its exit:
interpreter start, imports, data loading, training, the test evaluation and, for cnnlab, writing the
run folder are all inside. The commands run one after another for each seed (ours, lean, plain,
seed 001), so a change of load hits all three; the load average is recorded before each. Each result
is appended to a JSON-lines file at once, so a long run that is stopped keeps what it measured and
``--resume`` skips the (recipe, seed) pairs already there.

``--append`` keeps the rows already in ``--out`` and adds this run's after them (the summary is this run's).

Run:  python benchmarks/bench_mnist.py --data-root ../shared/data [--seeds 0 1 2] [--out FILE] [--append]
                                         [--skip-seed001] [--skip-plain]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import add_result_args, append_row, open_results, source_env  # noqa: E402 - benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("cnnlab", "lean", "lean-bf16", "plain", "seed001")


def _run(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=source_env())
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-1500:]}\n{proc.stderr[-2500:]}")
    return wall, proc


def run_cnnlab(root: str, seed: int, out: Path, config: str) -> dict:
    name = f"mnist-fast-s{seed}"
    cmd = [sys.executable, "-m", "cnnlab", "train", "--config", config, "--data-root", root, "--seed", str(seed)]
    wall, _ = _run([*cmd, "--out", str(out), "--name", name, "--no-progress"])
    run_dir = max(out.glob(f"{name}*"), key=lambda p: p.stat().st_mtime)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"wall_s": wall, "accuracy": float(metrics["accuracy"]), "epochs": metrics.get("best_epoch")}


def run_script(script: str, root: str, seed: int, *extra: str) -> dict:
    """A plain reference script (``mnist_lean.py``, ``mnist_plain.py``): its own JSON line, our wall clock."""
    wall, proc = _run([sys.executable, str(REPO / "benchmarks" / script), root, str(seed), *extra])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "accuracy": res["accuracy"], "after_imports_s": res["after_imports_s"], "epochs": 1}


def run_seed001(raw_root: str, seed: int, target: float) -> dict:
    cmd = [sys.executable, str(REPO / "benchmarks" / "mnist_seed001.py"), raw_root, str(seed), str(100 * target)]
    wall, proc = _run(cmd)
    epochs = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return {"wall_s": wall, "accuracy": epochs[-1]["accuracy"], "epochs": epochs[-1]["epoch"], "curve": epochs}


def unpack_mnist(root: str, dest: Path) -> str:
    """torchvision reads uncompressed IDX files: unpack the .gz copies once (seed 001's download step)."""
    raw = dest / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in (Path(root) / "MNIST" / "raw").glob("*-ubyte.gz"):
        with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return str(dest)


def measure(recipe: str, seed: int, args, tmp: Path, raw_root: str, out: Path) -> dict:
    """One run of ``recipe`` with ``seed``, appended to ``out`` as a JSON line at once."""
    load = os.getloadavg()[0]
    if recipe == "cnnlab":
        res = run_cnnlab(args.data_root, seed, tmp / "runs", args.config)
    elif recipe in ("lean", "plain"):
        res = run_script(f"mnist_{recipe}.py", args.data_root, seed)
    elif recipe == "lean-bf16":  # the lean script under bf16 autocast, as the recipe trains
        res = run_script("mnist_lean.py", args.data_root, seed, "bf16")
    else:
        res = run_seed001(raw_root, seed, args.target)
    row = append_row(out, {"recipe": recipe, "seed": seed, "load": load, **res})
    print(f"{recipe} seed {seed}: {res['wall_s']:.1f} s, {100 * res['accuracy']:.2f} %  (load {load:.1f})", flush=True)
    return row


def summarise(rows: list[dict], target: float) -> None:
    by = {r: [x for x in rows if x["recipe"] == r] for r in RECIPES}
    mean = {}
    for recipe, rs in by.items():
        if not rs:
            continue
        walls, accs = [x["wall_s"] for x in rs], [x["accuracy"] for x in rs]
        mean[recipe] = statistics.mean(walls)
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
        reached = sum(a >= target for a in accs)
        print(
            f"{recipe:<9} seeds {[x['seed'] for x in rs]}  wall {statistics.mean(walls):7.1f} ± {sd(walls):5.1f} s  "
            f"accuracy {100 * statistics.mean(accs):.2f} ± {100 * sd(accs):.2f} %  "
            f"(min {100 * min(accs):.2f} %, {reached}/{len(rs)} >= {100 * target:.1f} %)  "
            f"epochs {[x.get('epochs') for x in rs]}  load {[round(x['load'], 1) for x in rs]}"
        )
    if "cnnlab" in mean and "lean" in mean:
        print(f"cnnlab / lean script:  {mean['cnnlab'] / mean['lean']:.2f}x (target <= 1.00x)")
        print(f"  per seed (each pair ran back to back): {_pair_ratios(by['cnnlab'], by['lean'])}")
    if "cnnlab" in mean and "lean-bf16" in mean:
        print(f"cnnlab / lean script in bf16:  {mean['cnnlab'] / mean['lean-bf16']:.2f}x")
        print(f"  per seed: {_pair_ratios(by['cnnlab'], by['lean-bf16'])}")
    if "cnnlab" in mean and "plain" in mean:
        print(f"cnnlab / plain script: {mean['cnnlab'] / mean['plain']:.2f}x")
    if "cnnlab" in mean and "seed001" in mean:
        print(f"seed 001 / cnnlab:     {mean['seed001'] / mean['cnnlab']:.1f}x (target >= 13x)")


def _pair_ratios(ours: list[dict], ref: list[dict]) -> str:
    """cnnlab / reference for each seed and their median: a load spike in one run moves the mean of
    the walls, but only its own pair's ratio."""
    walls = {x["seed"]: x["wall_s"] for x in ref}
    ratios = {x["seed"]: x["wall_s"] / walls[x["seed"]] for x in ours if x["seed"] in walls}
    if not ratios:
        return "no seed ran both"
    shown = ", ".join(f"seed {s} {r:.2f}x" for s, r in sorted(ratios.items()))
    return f"{shown}; median {statistics.median(ratios.values()):.2f}x"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--config", default="configs/mnist_fast.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--target", type=float, default=0.99)
    add_result_args(ap, "mnist_time.jsonl")
    ap.add_argument("--skip-seed001", action="store_true", help="only ours and the plain scripts (minutes, not ~30)")
    ap.add_argument("--skip-plain", action="store_true", help="leave out mnist_plain.py (issue 18's reference)")
    ap.add_argument("--skip-lean-bf16", action="store_true", help="leave out the lean script under bf16 autocast")
    ap.add_argument(
        "--append", action="store_true", help="add this run's rows after those already in --out; summarise this run's"
    )
    args = ap.parse_args()
    if args.append:  # a record of runs over days: keep the file, run everything, compare within this run
        out, rows = Path(args.out), []
        out.parent.mkdir(parents=True, exist_ok=True)
    else:
        out, rows = open_results(args.out, args.resume)
    done = {(r["recipe"], r["seed"]) for r in rows}
    skipped = {"seed001"} if args.skip_seed001 else set()
    skipped |= {"plain"} if args.skip_plain else set()
    skipped |= {"lean-bf16"} if args.skip_lean_bf16 else set()
    recipes = [r for r in RECIPES if r not in skipped]
    with tempfile.TemporaryDirectory() as tmp:
        raw_root = unpack_mnist(args.data_root, Path(tmp) / "torchvision") if "seed001" in recipes else ""
        # ours and the plain scripts, seed by seed (the ratios come first); then seed 001's slow recipe
        plan = [(r, s) for s in args.seeds for r in recipes if r != "seed001"]
        plan += [(r, s) for s in args.seeds for r in recipes if r == "seed001"]
        for recipe, seed in plan:
            if (recipe, seed) not in done:
                rows.append(measure(recipe, seed, args, Path(tmp), raw_root, out))
    print(f"machine: {os.cpu_count()} CPUs; results in {out}")
    summarise(rows, args.target)


if __name__ == "__main__":
    main()
