"""Start-up of ``cnnlab train``: time to the first training step, against ``python -c "import torch"``.

Issue 18's target: ``cnnlab train`` reaches its first optimiser step within 1.5 s of what importing
torch alone takes on the same machine. Both are measured here in one run, alternating, each a fresh
process timed by the wall clock from just before it is started:

* ``import torch``: ``python -c "import torch"`` to its exit.
* bare first step: ``python -c`` importing torch and taking one SGD step on a 2x2 linear layer, the
  least any torch training pays (constructing a torch optimiser imports ``torch._dynamo``).
* ``cnnlab train``: the real command (``cnnlab.cli.main.main`` with the given flags), to the moment
  its first ``optimizer.step()`` returns. The child registers torch's public global hook
  (``torch.optim.optimizer.register_optimizer_step_post_hook``), which prints the time and ends the
  process there, so nothing in cnnlab itself carries a benchmark hook. The same child times the
  steps of ``cnnlab.api.train`` before the first step (dataset, split/normalisation, run folder,
  model) by wrapping the functions ``cnnlab.workflow`` calls.

Then one ``python -X importtime`` run of the same child lists the heaviest imports, and the heavy
optional packages (torchvision.models, matplotlib, onnx, scipy, sklearn, pandas) that were loaded.

Run:  python benchmarks/bench_startup.py [--repeats 3] [--json out.json] -- --data mnist-sample --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import append_row, source_env  # noqa: E402 - benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
HEAVY = ["torchvision", "torchvision.models", "torch._dynamo", "matplotlib", "onnx", "onnxruntime", "scipy", "sklearn"]
HEAVY += ["pandas"]

# The child: `cnnlab train ARGS`, ended at its first optimiser step. Phases are wall-clock stamps.
CHILD = r"""
import json, os, sys, time
t_start = time.time()
import torch
t_torch = time.time()
import cnnlab.api as api
t_api = time.time()
phases = []

def timed(name, fn):
    def wrapper(*a, **k):
        t = time.time()
        out = fn(*a, **k)
        phases.append((name, time.time() - t))
        return out
    return wrapper

import cnnlab.workflow as workflow  # the steps api.train runs, each wrapped where workflow looks it up
for name in ("load_dataset", "prepare_data", "build_model", "init_weights", "create_run_dir", "_write_run_start",
             "build_optimizer", "build_schedule", "Trainer"):
    setattr(workflow, name, timed(name, getattr(workflow, name)))

def first_step(optimizer, args, kwargs):
    heavy = [m for m in json.loads(os.environ["BENCH_HEAVY"]) if m in sys.modules]
    print("BENCH " + json.dumps({"t_start": t_start, "t_torch": t_torch, "t_api": t_api, "t_step": time.time(),
                                 "phases": phases, "heavy": heavy}), flush=True)
    os._exit(0)

from torch.optim.optimizer import register_optimizer_step_post_hook
register_optimizer_step_post_hook(first_step)
from cnnlab.cli.main import main
main(sys.argv[1:])
raise SystemExit("cnnlab train ended without an optimiser step")
"""


def env() -> dict:
    return source_env(BENCH_HEAVY=json.dumps(HEAVY))


# The least any torch training pays before its first step: torch, one optimiser (whose construction
# imports torch._dynamo), one forward/backward/step of a tiny model.
BARE_STEP = (
    "import torch; m = torch.nn.Linear(2, 2); o = torch.optim.SGD(m.parameters(), lr=0.1); "
    "m(torch.zeros(1, 2)).sum().backward(); o.step()"
)


def time_python(code: str) -> float:
    t = time.time()
    subprocess.run([sys.executable, "-c", code], check=True, env=env())
    return time.time() - t


def time_first_step(train_args: list[str], out: Path) -> dict:
    """One ``cnnlab train`` child; seconds from before its start to its first optimiser step, and phases."""
    argv = ["train", *train_args, "--out", str(out), "--no-progress"]
    t = time.time()
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, env=env(), cwd=REPO)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise SystemExit(f"cnnlab {' '.join(argv)} failed:\n{proc.stdout[-1500:]}\n{proc.stderr[-2500:]}")
    info = json.loads(line[6:])
    info["first_step_s"] = info["t_step"] - t
    info["interpreter_s"] = info["t_start"] - t
    return info


def importtime(train_args: list[str], out: Path, top: int) -> list[tuple[float, str]]:
    """The ``top`` heaviest imports (cumulative seconds, module) of one child under ``-X importtime``."""
    argv = ["train", *train_args, "--out", str(out), "--no-progress"]
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CHILD, *argv], capture_output=True, text=True, env=env(), cwd=REPO
    )
    rows = []
    for ln in proc.stderr.splitlines():
        if ln.startswith("import time:") and "|" in ln and "cumulative" not in ln:
            _, cum, name = ln.split("|")
            rows.append((int(cum) / 1e6, name.rstrip()))
    depth = {n: len(n) - len(n.lstrip()) for _, n in rows}
    shallow = [(c, n) for c, n in rows if depth[n] <= 5]  # top-level and their direct imports
    return sorted(shallow, reverse=True)[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--json", help="append the results as one JSON line to this file")
    ap.add_argument("train_args", nargs="*", help="flags for cnnlab train (after --)")
    args = ap.parse_args()
    train_args = args.train_args or ["--data", "mnist-sample", "--epochs", "1"]
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        torch_s, bare_s, runs = [], [], []
        for _ in range(args.repeats):  # alternate, so a change of load hits every side
            torch_s.append(time_python("import torch"))
            bare_s.append(time_python(BARE_STEP))
            runs.append(time_first_step(train_args, Path(tmp)))
        imports = importtime(train_args, Path(tmp), args.top)
    first = [r["first_step_s"] for r in runs]
    t_med, f_med, b_med = statistics.median(torch_s), statistics.median(first), statistics.median(bare_s)
    print(f"cnnlab train {' '.join(train_args)}   (load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
    print(f"python -c 'import torch':          {' '.join(f'{s:.2f}' for s in torch_s)} s  median {t_med:.2f} s")
    print(f"bare torch first step (Linear+SGD): {' '.join(f'{s:.2f}' for s in bare_s)} s  median {b_med:.2f} s")
    print(f"cnnlab train to first step:        {' '.join(f'{s:.2f}' for s in first)} s  median {f_med:.2f} s")
    print(f"cnnlab - import torch {f_med - t_med:+.2f} s (target <= +1.50 s), ratio {f_med / t_med:.2f}x")
    print(f"cnnlab - bare torch first step {f_med - b_med:+.2f} s, ratio {f_med / b_med:.2f}x")
    best = min(runs, key=lambda r: r["first_step_s"])
    print("where the time goes (fastest cnnlab run):")
    print(f"  interpreter start      {best['interpreter_s']:.2f} s")
    print(f"  import torch           {best['t_torch'] - best['t_start']:.2f} s")
    print(f"  import cnnlab.api      {best['t_api'] - best['t_torch']:.2f} s")
    for name, s in best["phases"]:
        print(f"  {name:<22} {s:.2f} s")
    accounted = best["t_api"] - best["t_start"] + sum(s for _, s in best["phases"])
    other = best["first_step_s"] - best["interpreter_s"] - accounted
    print(f"  other (CLI, config, first forward/backward) {other:.2f} s")
    print(f"heavy optional modules loaded: {best['heavy'] or 'none'}")
    print("heaviest imports (-X importtime, cumulative):")
    for cum, name in imports:
        print(f"  {cum:6.2f} s  {name}")
    if args.json:
        row = {"train_args": train_args, "load": load, "import_torch_s": torch_s, "bare_step_s": bare_s}
        row["first_step_s"] = first
        row.update(phases=best["phases"], heavy=best["heavy"])
        append_row(Path(args.json), row)


if __name__ == "__main__":
    main()
