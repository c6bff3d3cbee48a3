"""The CIFAR-10 speed recipe on a GPU, side by side with airbench (issue 18, item 3), for a session lent one.

For each seed, runs ``cnnlab train --config configs/cifar10_fast.yaml --device cuda`` (optionally with
``train.compile``) and, when ``--airbench`` names a copy of one of Keller Jordan's scripts
(``airbench94_muon.py`` is the record the recipe follows, ``legacy/airbench94.py`` the SGD one; public,
not part of this repository: fetch it yourself; they download CIFAR-10 through torchvision unless the
archive is already in their data folder, and airbench94_muon.py repeats its run many times: lower
its trial count for a quick comparison), that script too, one after the other, each a fresh process
timed by the wall clock from start to exit. Prints one JSON line per run and a summary, and appends
the lines to ``--out``.

Run:  python benchmarks/cifar10_fast_gpu.py --data-root ../shared/data [--seeds 0 1 2] [--compile]
      [--airbench path/to/airbench94_muon.py]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from cifar10_fast import train  # noqa: E402  (same fresh-process timing as the CPU benchmark)


def run_airbench(script: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script)], cwd=script.parent, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed:\n{proc.stderr[-2500:]}")
    # airbench prints a table per epoch; its last number in a percent-like column is the TTA accuracy
    accs = [float(m) for m in re.findall(r"\b0\.9\d{2,}\b", proc.stdout)]
    return {
        "recipe": script.stem,
        "wall_s": wall,
        "accuracy": accs[-1] if accs else None,
        "stdout_tail": proc.stdout[-800:],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--config", default="configs/cifar10_fast.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--compile", action="store_true", help="also set train.compile=true")
    ap.add_argument("--airbench", type=Path, help="a copy of airbench94_muon.py (or airbench94.py) to time after ours")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cifar10_fast_gpu.jsonl"))
    args = ap.parse_args()
    extra = ["--device", "cuda"] + (["--set", "train.compile=true"] if args.compile else [])
    rows = []
    runs_root = REPO / "runs" / "bench-gpu"
    for seed in args.seeds:
        wall, run_dir = train(args.config, args.data_root, seed, runs_root, f"fast-gpu-s{seed}", *extra)
        acc = json.loads((run_dir / "metrics.json").read_text())["accuracy"]
        rows.append({"recipe": "cnnlab", "seed": seed, "wall_s": wall, "accuracy": acc, "compile": args.compile})
        if args.airbench:
            rows.append({**run_airbench(args.airbench.resolve()), "seed": seed})
    with open(args.out, "a") as f:
        for r in rows:
            r["time"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            f.write(json.dumps(r) + "\n")
            print(json.dumps(r))
    for recipe in ("cnnlab", "airbench94"):
        rs = [r for r in rows if r["recipe"] == recipe]
        if rs:
            accs = [r["accuracy"] for r in rs if r["accuracy"] is not None]
            print(
                f"{recipe}: wall {statistics.mean(r['wall_s'] for r in rs):.1f} s, accuracy "
                f"{100 * statistics.mean(accs):.2f} % over {len(accs)} runs"
                if accs
                else f"{recipe}: no accuracy"
            )


if __name__ == "__main__":
    main()
