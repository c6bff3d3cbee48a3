"""What a training process's exit costs: as Python leaves it, with the objects frozen first (``gc.freeze`` at
exit), and ended by ``cnnlab.cli.main.exit_now`` (threads joined, atexit handlers run, then ``os._exit``), as
the ``cnnlab`` command ends now.

A child process imports torch, builds MNIST's ``fast_cnn`` with a ``torch.optim.SGD`` (whose first use
imports TorchDynamo, as in every training run), takes 3 steps, prints the time and returns; the parent
notes when the child has exited. The gap is the interpreter's shutdown: the atexit handlers, the last
garbage collection over every object still alive, and freeing them. ``frozen`` registers ``gc.freeze``
with atexit first, as ``cnnlab.workflow.start_session`` does; ``exit_now`` does that too and then ends the
process through ``exit_now``. Rounds alternate the three; the minimum and the median of each are printed.

Run:  python benchmarks/exit_cost.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from _bench import source_env  # noqa: E402 - benchmarks/ is on sys.path when run as a script

CHILD = """
import atexit, gc, time, torch
import torch.nn.functional as F
from cnnlab.models.fast import fast_cnn
if {frozen}:
    atexit.register(gc.freeze)
model = fast_cnn(widths=[16, 32, 64])
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
for _ in range(3):
    F.cross_entropy(model(torch.randn(96, 1, 28, 28)), torch.randint(0, 10, (96,))).backward()
    opt.step()
print(time.time(), flush=True)
if {fast}:
    from cnnlab.cli.main import exit_now
    exit_now(0)
"""


def exit_seconds(frozen: bool, fast: bool = False) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD.format(frozen=frozen, fast=fast)], capture_output=True, text=True, env=source_env()
    )
    ended = time.time()
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return ended - float(proc.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    times: dict[str, list[float]] = {"as Python leaves it": [], "frozen at exit": [], "exit_now": []}
    for _ in range(args.rounds):
        times["as Python leaves it"].append(exit_seconds(False))
        times["frozen at exit"].append(exit_seconds(True))
        times["exit_now"].append(exit_seconds(True, fast=True))
    for name, ts in times.items():
        print(f"exit {name:<20} min {min(ts):.3f} s  median {statistics.median(ts):.3f} s  ({args.rounds} rounds)")


if __name__ == "__main__":
    main()
