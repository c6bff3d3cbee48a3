"""Choosing MNIST's one-epoch recipe without the test set: candidate settings scored on held-out training images.

Each candidate is ``configs/mnist_fast.yaml`` (or ``--config``) with a few keys changed. For every seed it
trains one epoch on 50,000 training images and is scored on the other 10,000 (``data.val_fraction`` 1/6, a
stratified split drawn from the seed, so every candidate of one seed sees the same split): the run's
validation accuracy after its one epoch. The runs go through ``cnnlab.api.train`` in this process, one
after another, on one thread by default (bit-reproducible, and the second core stays free for other work).
Every cnnlab run also scores the test split at its end; that figure stays unread in a temporary folder,
which is removed with it. Untimed: the seconds printed are only for planning.

Each (candidate, seed) is appended to ``--out`` as one JSON line when it finishes; ``--resume`` runs only
the pairs missing there. The summary ranks the candidates by mean held-out accuracy and gives the
weakest seed's.

Run:  python benchmarks/mnist_heldout.py --data-root ../shared/data --try base --try b96 data.batch_size=96
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _bench import add_result_args, append_row, open_results  # noqa: E402 - benchmarks/ is on sys.path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # this checkout's cnnlab, not an installed copy

import cnnlab.api as api  # noqa: E402


def parse_candidates(tries: list[list[str]]) -> dict[str, dict[str, str]]:
    """``[["b96", "data.batch_size=96"], ...]`` -> {"b96": {"data.batch_size": "96"}} (values read as YAML)."""
    out = {}
    for name, *pairs in tries:
        bad = [p for p in pairs if "=" not in p]
        if bad or name in out:
            raise SystemExit(f"--try {name}: give a new name, then KEY=VALUE pairs (not {bad or 'a repeated name'})")
        out[name] = dict(p.split("=", 1) for p in pairs)
    return out


def held_out_accuracy(config: str, root: str, seed: int, changes: dict[str, str], threads: int, tmp: Path) -> dict:
    """One epoch of ``config`` + ``changes`` for ``seed``; the held-out accuracy and loss after it."""
    overrides = {
        "data.root": root,
        "data.val_fraction": 1 / 6,  # 10,000 of the 60,000 training images
        "train.seed": seed,
        "train.threads": threads,
        "output.root": str(tmp),
        "output.progress": False,
        **changes,
    }
    start = time.perf_counter()
    last = api.train(config, overrides=overrides, log=lambda line: None).history[-1]
    return {
        "val_acc": last["val_acc"],
        "val_loss": last["val_loss"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def summarise(rows: list[dict]) -> None:
    by: dict[str, dict[int, float]] = {}
    for r in rows:
        by.setdefault(r["candidate"], {})[r["seed"]] = r["val_acc"]
    print(f"{'candidate':<28} {'per seed':<30} {'mean ± std':>14} {'weakest':>8}")
    for name, accs in sorted(by.items(), key=lambda kv: -statistics.mean(kv[1].values())):
        values = list(accs.values())
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        seeds = " / ".join(f"{100 * accs[s]:.2f}" for s in sorted(accs))
        print(f"{name:<28} {seeds:<30} {100 * statistics.mean(values):7.2f} ± {100 * sd:.2f} {100 * min(values):8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--config", default=str(REPO / "configs" / "mnist_fast.yaml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (1: bit-reproducible)")
    ap.add_argument(
        "--try", dest="tries", nargs="+", action="append", required=True, metavar=("NAME", "KEY=VALUE"),
        help="a candidate: its name, then the config keys it changes (none: the config as it is)",
    )  # fmt: skip
    add_result_args(ap, "mnist_heldout.jsonl")
    args = ap.parse_args()
    candidates = parse_candidates(args.tries)
    out, rows = open_results(args.out, args.resume)
    done = {(r["candidate"], r["seed"]) for r in rows}
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for name, changes in candidates.items():
            for seed in args.seeds:
                if (name, seed) in done:
                    continue
                res = held_out_accuracy(args.config, args.data_root, seed, changes, args.threads, Path(tmp))
                rows.append(append_row(out, {"candidate": name, "seed": seed, "changes": changes, **res}))
                print(f"{name} seed {seed}: held-out {100 * res['val_acc']:.2f} %  ({res['seconds']} s)", flush=True)
    summarise([r for r in rows if r["candidate"] in candidates])


if __name__ == "__main__":
    main()
