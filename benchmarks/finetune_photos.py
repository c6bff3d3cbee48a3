"""Fine-tune vs from scratch on a small photo folder, and k-fold CV on it (issue 14's figures).

ImageNet weights cannot be fetched on the development machines, so the pretrained network is the
project's own seed CNN trained on the CIFAR-10 JPEG copy's training images: ``--source all`` (the
default) uses all ten classes (50,000 images; like ImageNet, which holds many cats, dogs and
horses, it knows related pictures), ``--source others`` only the six classes that are not in the
photo folder (airplane, automobile, bird, frog, ship, truck; 30,000 images). The photo folder is
the example of docs/own-images.md: four animal classes (cat, deer, dog, horse) taken from the
CIFAR-10 *test* JPEGs, 200 training photos per class and 300 more per class as its test/ split, so
no photo was seen in pretraining.

Per seed, three runs of ``cnnlab train`` on the photos (as a user types them):

- ``scratch``: the seed CNN from random weights, the defaults, ``--epochs E``;
- ``finetune``: ``--pretrained SOURCE_RUN`` and nothing else: the fine-tune recipe (head first, then
  everything with discriminative rates under one-cycle, the LR from the LR finder), ``--epochs E``;
- ``scratch-same-time-as-SOURCE``: from scratch again, with as many epochs as fit in the fine-tune
  run's wall time (scratch epochs are cheaper: no LR finder) and early stopping off, so it uses the
  same budget (the defaults' early stopping would end it where ``scratch`` ended).

Then ``cnnlab cv --folds K`` over the 800 training photos (flat folder), from scratch and fine-tuned.
Every run's result goes to a JSON-lines file (one object per run; ``--resume`` skips those done) and
the summary (mean +- sample std over seeds) is printed as a Markdown table.

Run (machine otherwise idle; about 15 minutes on 2 cores)::

    python benchmarks/finetune_photos.py --cifar ../shared/data/cifar10-jpeg --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

PHOTO_CLASSES = ("cat", "deer", "dog", "horse")
OTHER_CLASSES = ("airplane", "automobile", "bird", "frog", "ship", "truck")
SOURCES = {"all": PHOTO_CLASSES + OTHER_CLASSES, "others": OTHER_CLASSES}
QUIET = ["--no-progress", "--set", "output.plots=false"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cifar", required=True, help="folder holding the CIFAR-10 JPEG copy's train.tar and test.tar")
    p.add_argument("--work", default=str(Path.home() / ".cache" / "cnnlab" / "bench-finetune"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--source", choices=sorted(SOURCES), default="all", help="classes the source run learns")
    p.add_argument("--no-cv", action="store_true", help="skip the cross-validation part")
    p.add_argument("--epochs", type=int, default=10, help="epochs of the scratch and fine-tune runs (default 10)")
    p.add_argument("--pretrain-epochs", type=int, default=6)
    p.add_argument("--per-class", type=int, default=200, help="training photos per class (default 200)")
    p.add_argument("--test-per-class", type=int, default=300)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/finetune_photos.jsonl")
    p.add_argument("--resume", action="store_true", help="keep the results already in --out, run the rest")
    return p.parse_args(argv)


def extract(tar_path: Path, dest: Path, plan: dict[str, list[tuple[str, int, int]]]) -> None:
    """Copy members ``<split>/<class>/*.jpg`` into ``dest/<target>/<class>/`` per ``plan``:
    {split: [(target, first, count)]}: the sorted files ``first .. first+count`` of each class."""
    with tarfile.open(tar_path) as tar:
        by_class: dict[tuple[str, str], list[tarfile.TarInfo]] = {}
        for m in tar.getmembers():
            parts = Path(m.name).parts
            if m.isfile() and len(parts) == 3 and parts[2].endswith(".jpg"):
                by_class.setdefault((parts[0], parts[1]), []).append(m)
        for (split, cls), members in by_class.items():
            for target, first, count in plan.get(cls, {}).get(split, []):
                out = dest / target / cls
                out.mkdir(parents=True, exist_ok=True)
                for m in sorted(members, key=lambda m: m.name)[first : first + count]:
                    (out / Path(m.name).name).write_bytes(tar.extractfile(m).read())


def build_folders(args, work: Path) -> None:
    if (work / "ready-v2").is_file():
        return
    n, t = args.per_class, args.test_per_class
    targets = [("photos/train", 0, n), ("photos/test", n, t), ("photos-flat", 0, n)]
    photos = {c: {"test": targets} for c in PHOTO_CLASSES}
    extract(Path(args.cifar) / "test.tar", work, photos)
    source = {
        c: {"train": [("source-all", 0, 5000)] + [("source-others", 0, 5000)] * (c in OTHER_CLASSES)}
        for c in SOURCES["all"]
    }
    extract(Path(args.cifar) / "train.tar", work, source)
    (work / "ready-v2").write_text("ok\n")


def cnnlab(*argv: str) -> tuple[float, Path]:
    """Run one cnnlab command as a user would: (its wall time in seconds, the folder it printed last)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cnnlab", *argv], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    print(done.stdout, end="", flush=True)
    folders = [
        line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith(("run folder: ", "folds: "))
    ]
    return wall, Path(folders[-1].strip()) if folders else Path()


def train(work: Path, name: str, *flags: str) -> dict:
    wall, run = cnnlab("train", "--out", str(work / "runs"), "--name", name, *QUIET, *flags)
    metrics = json.loads((run / "metrics.json").read_text())  # a taken name gets a suffix: use the printed folder
    return {
        "accuracy": metrics["accuracy"],
        "train_seconds": metrics["train_seconds"],
        "wall_s": wall,
        "run_dir": str(run),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(args.work).expanduser()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in out.read_text().splitlines()] if args.resume and out.is_file() else []
    if not args.resume:
        out.write_text("")
    build_folders(args, work)
    name = f"source-{args.source}"
    source = work / "runs" / name
    if not (source / "model" / "model.json").is_file():
        flags = ["--data", f"folder:{work / name}", "--model", "seed_cnn", "--image-size", "32"]
        flags += ["--epochs", str(args.pretrain_epochs), "--data.test_fraction", "0.05"]
        record(out, done, {"run": "source", "source": args.source, **train(work, name, *flags)})
    photos, e = f"folder:{work / 'photos'}", str(args.epochs)
    for seed in args.seeds:
        common = ["--data", photos, "--model", "seed_cnn", "--seed", str(seed)]
        scratch = ["--epochs", e, "--image-size", "32"]  # the photos' own size (the source run brings 32 too)
        finetune = f"finetune-{args.source}"
        for kind, flags in (("scratch", scratch), (finetune, ["--epochs", e, "--pretrained", str(source)])):
            if not _done(done, kind, seed):
                row = train(work, f"{kind}-{seed}", *common, *flags)
                record(out, done, {"run": kind, "seed": seed, "epochs": args.epochs, **row})
        budget = _get(done, finetune, seed)["wall_s"] / _get(done, "scratch", seed)["wall_s"] * args.epochs
        same = max(args.epochs, round(budget))
        same_time = f"scratch-same-time-as-{args.source}"
        if not _done(done, same_time, seed):
            no_stop = ["--set", "train.early_stop_patience=null"]  # it may use the whole budget
            row = train(work, f"{same_time}-{seed}", *common, "--epochs", str(same), "--image-size", "32", *no_stop)
            record(out, done, {"run": same_time, "seed": seed, "epochs": same, **row})
    cvs = (("cv-scratch", ["--image-size", "32"]), (f"cv-finetune-{args.source}", ["--pretrained", str(source)]))
    for kind, flags in () if args.no_cv else cvs:
        if not _done(done, kind, 0):
            record(out, done, {"run": kind, "seed": 0, **cross_validate(work, args, kind, flags)})
    print(summary(done))
    return 0


def cross_validate(work: Path, args, name: str, flags: list[str]) -> dict:
    runs = work / "runs"
    wall, _ = cnnlab(
        "cv", "--folds", str(args.folds), "--data", f"folder:{work / 'photos-flat'}", "--model", "seed_cnn",
        "--epochs", str(args.epochs), "--out", str(runs), "--name", name, *QUIET, *flags,
    )  # fmt: skip
    summary = json.loads((runs / name / "cv.json").read_text())
    return {"cv": summary, "wall_s": wall}


def record(out: Path, done: list[dict], row: dict) -> None:
    done.append(row)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")


def _done(done, kind, seed) -> bool:
    return any(r["run"] == kind and r.get("seed") == seed for r in done)


def _get(done, kind, seed) -> dict:
    return next(r for r in done if r["run"] == kind and r.get("seed") == seed)


def _mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def summary(done: list[dict]) -> str:
    lines = ["| run | epochs | test accuracy (mean ± std) | wall s (mean) | n |", "|---|---|---|---|---|"]
    for kind in dict.fromkeys(r["run"] for r in done if "seed" in r and not r["run"].startswith("cv-")):
        rows = [r for r in done if r["run"] == kind]
        epochs = sorted({r["epochs"] for r in rows})
        acc, wall = [r["accuracy"] for r in rows], statistics.mean(r["wall_s"] for r in rows)
        lines.append(f"| {kind} | {'/'.join(map(str, epochs))} | {_mean_std(acc)} | {wall:.1f} | {len(rows)} seeds |")
    for r in done:
        if r["run"].startswith("cv-"):
            folds = [f["metrics"]["accuracy"] for f in r["cv"]["runs"]]
            lines.append(f"| {r['run']} | per fold | {_mean_std(folds)} | {r['wall_s']:.1f} | {len(folds)} folds |")
        if r["run"] == "source":
            lines.append(
                f"| source-{r.get('source')} (its own test split) | | {r['accuracy']:.4f} | {r['wall_s']:.1f} | 1 |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
