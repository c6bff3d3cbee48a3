"""Start-up of the commands that list or count, against ``python -c "import torch"``, in one run.

Issue 30's target: ``cnnlab models`` (and any command that lists or counts) within 1 s of what
importing torch alone takes on the same machine. Every command is a fresh process timed by the wall
clock from just before it starts to its exit; the commands run in turn, ``--repeats`` rounds, so a
change of load hits them all, and each command's median is printed beside its difference from
``import torch``'s median of the same rounds. ``import torch, torchvision`` is the floor of the
commands that build one of torchvision's ImageNet networks (importing torchvision imports TorchDynamo).

``--baseline SRC`` times the same commands from another source tree (``git worktree add /tmp/old
COMMIT`` then ``--baseline /tmp/old/src``) in the same rounds, each right after this tree's run, so a
change is measured against what it replaced under the same load.

Run:  python benchmarks/bench_commands.py [--repeats 5] [--baseline /tmp/old/src]
      [--json benchmarks/results/commands.jsonl]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import REPO, append_row, cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

REFERENCES = {"import torch": ["-c", "import torch"], "import torch, torchvision": ["-c", "import torch, torchvision"]}


def commands(out: str) -> dict[str, list[str]]:
    """The timed cnnlab commands; ``out`` is a scratch folder for the teaching figures."""
    teach = ["--out", out]
    argvs = {
        "cnnlab --help": ["--help"],
        "cnnlab models": ["models"],
        "cnnlab models --markdown": ["models", "--markdown"],
        "cnnlab models resnet --classes 100": ["models", "resnet", "--classes", "100"],
        "cnnlab models _cifar --input 3x64x64": ["models", "_cifar", "--input", "3x64x64"],
        "cnnlab models resnet --input 3x64x64": ["models", "resnet", "--input", "3x64x64"],
        "cnnlab summary seed_cnn": ["summary", "seed_cnn"],
        "cnnlab summary resnet18_cifar": ["summary", "resnet18_cifar"],
        "cnnlab summary wrn28_10_cifar": ["summary", "wrn28_10_cifar"],
        "cnnlab summary vgg16 (torchvision)": ["summary", "vgg16"],
        "cnnlab datasets": ["datasets"],
        "cnnlab calc conv --in 32 --k 3": ["calc", "conv", "--in", "32", "--k", "3", "--cin", "3"],
        "cnnlab teach arch resnet": ["teach", "arch", "resnet", *teach],
        "cnnlab teach why-cnn": ["teach", "why-cnn", *teach],
        "cnnlab teach transfer": ["teach", "transfer", *teach],
    }
    return {name: ["-m", "cnnlab", *argv] for name, argv in argvs.items()}


def wall(args: list[str], src: Path) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]).rstrip(":")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed (PYTHONPATH {src}):\n{proc.stderr[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline", type=Path, help="another source tree's src/ to time in the same rounds")
    ap.add_argument("--json", help="append the medians as one JSON line to this file")
    args = ap.parse_args()
    trees = {"now": REPO / "src", **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    with tempfile.TemporaryDirectory() as out:
        timed = {**REFERENCES, **commands(out)}
        times = {(tree, name): [] for name in timed for tree in (trees if name not in REFERENCES else ["now"])}
        load = os.getloadavg()[0]
        for _ in range(args.repeats):
            for tree, name in times:
                times[tree, name].append(wall(timed[name], trees[tree]))
    medians = {key: statistics.median(ts) for key, ts in times.items()}
    base = medians["now", "import torch"]
    loads = f"load {load:.1f} at start, {os.getloadavg()[0]:.1f} at the end"
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, {loads}; medians of {args.repeats} rounds")
    print(f"{'command':<40} {'median':>8} {'vs import torch':>16}" + ("  baseline" if args.baseline else ""))
    for name in timed:
        m = medians["now", name]
        old = medians.get(("baseline", name))
        print(f"{name:<40} {m:6.2f} s {m - base:+14.2f} s" + (f"  {old:6.2f} s" if old is not None else ""))
    if args.json:
        row = {"load": load, "load_end": os.getloadavg()[0], "repeats": args.repeats}
        row["median_s"] = {name: medians["now", name] for name in timed}
        if args.baseline:
            row["baseline"] = str(args.baseline)
            row["baseline_median_s"] = {name: medians["baseline", name] for name in timed if name not in REFERENCES}
        append_row(args.json, row)


if __name__ == "__main__":
    main()
