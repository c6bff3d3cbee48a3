"""Train the small demo model shipped as ``demo:mnist``: fast_cnn on full MNIST, then write the shipped run.

The recipe is ``configs/mnist_fast.yaml`` (a 16-32-64 channel BatchNorm CNN, 28,938 parameters, so
the weights are about 120 kB; one-cycle SGD, 2 epochs over all 60,000 training images), with a
fixed seed, through ``cnnlab.api.train``: the result is an ordinary run folder under ``--out``.

The shipped run, ``src/cnnlab/demo/mnist/`` (package data), is written from it so that it works
offline: its ``config.yaml`` reads the bundled ``mnist-sample`` (the training config, on full MNIST,
is kept in ``model/model.json``) and its ``split.csv`` names the sample's 1,000 test images (real
images of MNIST's official test set, never trained on; checked here pixel for pixel against the full
test set), so ``cnnlab evaluate | interpret | report | visualize | explain | compress demo:mnist``
need no download.
Its ``predictions.csv`` and ``metrics.json`` are for those 1,000; ``model.json``'s ``demo`` section
records both accuracies, each labelled: the full MNIST test set (10,000 images) and the bundled 1,000.
Rerunning the script regenerates the folder (``--ship-only RUN`` re-ships a run already trained).

Usage (from the repository root; the MNIST files are the official IDX .gz files)::

    python scripts/train_demo_model.py --data-root ../shared/data --threads 1

Measured (2026-12-01, shared 2-core machine, ``--threads 1``): 99.44 % on the 10,000 MNIST test
images, 98.9 % on the bundled 1,000, 85 s for the two epochs; the shipped folder is 326 kB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "src" / "cnnlab" / "demo" / "mnist"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", required=True, help="folder holding MNIST/raw/*.gz")
    p.add_argument("--out", default="runs", help="folder for the training run folder (default runs)")
    p.add_argument("--name", default="demo-mnist-train", help="training run folder name (default demo-mnist-train)")
    p.add_argument("--epochs", type=int, default=2, help="epochs over the 60,000 training images (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--ship-to", default=str(SHIPPED), help="the shipped run folder (default src/cnnlab/demo/mnist)")
    p.add_argument("--ship-only", metavar="RUN", help="skip training: ship this already trained run folder")
    return p.parse_args(argv)


def train(args: argparse.Namespace) -> Path:
    from cnnlab import api

    overrides = {
        "data.root": args.data_root,
        "train.epochs": args.epochs,
        "train.seed": args.seed,
        "output.root": args.out,
        "output.name": args.name,
    }
    if args.threads:
        overrides["train.threads"] = args.threads
    return Path(api.train(REPO / "configs" / "mnist_fast.yaml", overrides=overrides).run_dir)


def check_sample_is_mnist_test(data_root: str) -> np.ndarray:
    """The bundled sample's test images are rows of MNIST's official test set: returns those row indices."""
    from cnnlab.data import sources
    from cnnlab.data.datasets import load_dataset

    sample = sources.load_mnist_sample()
    full = load_dataset("mnist", root=data_root)
    rows = sample["test_indices"]
    if not np.array_equal(full.test_images[rows], sample["test_images"]):
        raise SystemExit("the bundled mnist-sample test images are not MNIST's test rows test_indices")
    if not np.array_equal(full.test_labels[rows], sample["test_labels"]):
        raise SystemExit("the bundled mnist-sample test labels differ from MNIST's")
    return rows


def ship(run_dir: Path, dest: Path, data_root: str) -> dict:
    """Write the shipped run ``dest`` from the trained full-MNIST run ``run_dir``; return its record."""
    from cnnlab.data.datasets import load_dataset
    from cnnlab.data.splits import write_split_csv
    from cnnlab.evaluation.metrics import classification_metrics
    from cnnlab.runs.folder import write_json
    from cnnlab.runs.predictions import write_predictions
    from cnnlab.runs.run import _softmax, open_run

    trained = open_run(run_dir)
    full = trained.metrics()  # the 10,000 official test images, scored by training
    rows = check_sample_is_mnist_test(data_root)
    sample = load_dataset("mnist-sample")
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "model").mkdir(parents=True)
    for name in ("env.json", "history.csv", "model/weights.safetensors"):
        shutil.copyfile(run_dir / name, dest / name)  # not copy2: the 0600 mode of an atomic write
    # config.yaml names the data this folder reads (the bundled sample: offline, and what compress
    # calibrates and fine-tunes on); the training config, full MNIST, stays in model.json's "config"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["data"].update(name="mnist-sample", root=None)
    (dest / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    write_split_csv(dest / "split.csv", [("test", i, int(y)) for i, y in enumerate(sample.test_labels)])
    data = json.loads((run_dir / "data.json").read_text())
    data["class_counts"]["test"] = np.bincount(sample.test_labels, minlength=10).tolist()
    data["note"] = "trained on all 60,000 MNIST training images; test split: the 1,000 of the bundled mnist-sample"
    write_json(dest / "data.json", data)

    meta = json.loads((run_dir / "model" / "model.json").read_text())
    meta["dataset"] = "mnist-sample"  # what split.csv indexes: readable offline
    (dest / "model" / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    run = open_run(dest)
    examples = run.examples("test")
    logits = run.logits(examples)  # (1000, 10)
    probs = _softmax(logits)
    write_predictions(dest / "predictions.csv", examples.ids, examples.labels, probs, run.classes)

    saved = trained.predictions()  # the same images, predicted by training on the full test set
    same = saved.probs[rows]
    if not (np.array_equal(same.argmax(1), probs.argmax(1)) and np.allclose(same, probs, atol=1e-5)):
        raise SystemExit("predictions on the bundled images differ from the full run's on the same test rows")

    bundled = classification_metrics(examples.labels, logits.argmax(1), logits, run.classes)
    keep = ("accuracy", "top5_accuracy", "loss")
    record = {
        "name": "demo:mnist",
        "trained_on": f"mnist: all 60,000 official training images, {meta['epochs_trained']} epochs, "
        "configs/mnist_fast.yaml, seed " + str(trained.env.get("seed", "?")),
        "test_full_mnist": {"images": int(full["num_samples"]), **{k: full[k] for k in keep}},
        "test_bundled": {"dataset": "mnist-sample", "images": len(examples), **{k: bundled[k] for k in keep}},
        "built": time.strftime("%Y-%m-%d", time.gmtime()),
        "command": "python scripts/train_demo_model.py --data-root ../shared/data --threads 1",
    }
    meta["demo"] = record
    (dest / "model" / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_json(
        dest / "metrics.json",
        {
            **bundled,
            "test_data": "the bundled mnist-sample test split: 1,000 MNIST test images (split.csv)",
            "full_mnist_test": {**{k: v for k, v in full.items() if k not in ("best_epoch", "train_seconds")}},
            "best_epoch": full.get("best_epoch"),
            "train_seconds": full.get("train_seconds"),
        },
    )
    return record


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = Path(args.ship_only) if args.ship_only else train(args)
    dest = Path(args.ship_to)
    record = ship(run_dir, dest, args.data_root)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"demo model: trained run {run_dir}, shipped as {record['name']} in {dest} ({round(size / 1024)} kB)")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
