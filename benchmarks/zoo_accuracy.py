"""Test accuracy of the small-input zoo models on MNIST and the CIFAR-10 copy, one short schedule each.

Every model trains with the same recipe per dataset (see RECIPES: the share of the training split,
epochs, optimiser and schedule), over several seeds, through `cnnlab.train` exactly as
`cnnlab train` does; the full official test set (10,000 images) scores every run. The schedules are
short so that the whole table fits a 2-core CPU in about an hour: they rank what a model learns
from a small budget, not what it reaches when trained to convergence (ResNet-18 needs a GPU for
that; see docs/models.md).

Results are appended to a JSON-lines file as each run finishes, and a run already in it is not
trained again, so an interrupted benchmark continues where it stopped. At the end (or with
--table) a Markdown table of mean +/- std over seeds is printed.

Run:  python benchmarks/zoo_accuracy.py --data-root ../shared/data [--seeds 0 1 2] [--models lenet5 ...]
      python benchmarks/zoo_accuracy.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

MODELS = ["lenet5", "fast_cnn", "seed_cnn", "mnist_cnn", "mobilenet_v1_cifar", "vgg11_bn_cifar", "resnet18_cifar"]

COMMON = {
    "optim.name": "adam",
    "optim.lr": 2e-3,
    "optim.weight_decay": 5e-4,
    "sched.name": "onecycle",
    "data.batch_size": 128,
    "data.val_fraction": 0.02,  # a small validation split: the test set is what is reported
    "train.early_stop_patience": None,
    "output.plots": False,
    "output.progress": False,
}

RECIPES = {  # 20 % of the training split: 11,761 MNIST and about 9,800 CIFAR-10 images
    "mnist": {**COMMON, "data.name": "mnist", "data.train_fraction": 0.2, "train.epochs": 1, "data.augment": "none"},
    "cifar10": {
        **COMMON,
        "data.name": "cifar10",
        "data.train_fraction": 0.2,
        "train.epochs": 2,
        "data.augment": "crop-flip",
    },
}


def _flags(overrides: dict) -> str:
    skip = {"output.plots", "output.progress", "data.name"}
    return " ".join(f"--{k} {'null' if v is None else v}" for k, v in overrides.items() if k not in skip)


def run_one(data: str, model: str, seed: int, root: str | None, out: str) -> dict:
    import cnnlab

    ov = {**RECIPES[data], "model.name": model, "train.seed": seed, "output.root": out}
    if root:
        ov["data.root"] = root
    start = time.perf_counter()
    r = cnnlab.train(overrides=ov, log=lambda s: None)
    return {
        "data": data,
        "model": model,
        "seed": seed,
        "accuracy": r.metrics["accuracy"],
        "seconds": time.perf_counter() - start,
        "when": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def table(rows: list[dict]) -> str:
    lines = []
    for data, recipe in RECIPES.items():
        lines += [
            f"\n**{data}**: `cnnlab train --data {data} --data-root ../shared/data --model MODEL --seed S "
            f"{_flags(recipe)} --output.plots false`\n",
            "| model | test accuracy (mean ± std) | seeds | wall time per run (train + test) |",
            "|---|--:|--:|--:|",
        ]
        for model in MODELS:
            got = [r for r in rows if r["data"] == data and r["model"] == model]
            if not got:
                continue
            acc = [100 * r["accuracy"] for r in got]
            spread = f" ± {statistics.stdev(acc):.2f} %" if len(acc) > 1 else " % (one run)"
            secs = statistics.mean(r["seconds"] for r in got)
            lines.append(f"| `{model}` | {statistics.mean(acc):.2f}{spread} | {len(got)} | {secs:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data-root", default=None, help="folder with MNIST/ and cifar10-jpeg/ (or cifar-10-batches-py)")
    ap.add_argument("--results", default="benchmarks/results/zoo_accuracy.jsonl")
    ap.add_argument("--out", default="/tmp/cnnlab-bench-zoo", help="run folders go here")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--table", action="store_true", help="only print the table of what the results file holds")
    args = ap.parse_args()
    results = Path(args.results)
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.is_file() else []
    if not args.table:
        import torch

        torch.set_num_threads(args.threads)
        results.parent.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:  # seeds outermost: a stopped benchmark already has every model once
            for data in args.data:
                for model in args.models:
                    if any((r["data"], r["model"], r["seed"]) == (data, model, seed) for r in rows):
                        continue
                    row = run_one(data, model, seed, args.data_root, args.out)
                    rows.append(row)
                    with open(results, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(f"{data:8s} {model:20s} seed {seed}  {100 * row['accuracy']:.2f} %  "
                          f"{row['seconds']:.0f} s  load {row['load']:.1f}", flush=True)  # fmt: skip
    print(table(rows))


if __name__ == "__main__":
    main()
