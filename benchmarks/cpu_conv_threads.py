"""The convolutions of ``airbench`` under bf16 on this CPU, one and two threads: forward, input and weight gradients.

``benchmarks/profile_cifar10_fast.py`` shows the backward pass taking most of a training step of
``configs/cifar10_fast.yaml``. This times its parts per convolution: each 3x3 convolution of the
64-256-256 network at its own input size, bf16 in channels_last (what bf16 autocast runs), split
into the forward pass, the gradient with respect to the input and the gradient with respect to
the filters (``aten.convolution_backward`` with one output at a time), each the median of
``--repeats`` calls, at each thread count of ``--threads``. Prints one JSON line per (shape,
threads) and the network's totals, and appends them to ``--out``. Record the load average: on a
machine shared with other jobs a thread that waits for a busy core stalls the other.

Run:  python benchmarks/cpu_conv_threads.py [--batch 500] [--threads 1 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from _bench import append_row  # noqa: E402 - benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
# (in channels, out channels, side) of every 3x3 convolution in airbench 64-256-256 on 32x32 inputs
SHAPES = [(24, 64, 31), (64, 64, 15), (64, 256, 15), (256, 256, 7), (256, 256, 7), (256, 256, 3)]


def median_ms(fn, repeats: int) -> float:
    fn()  # oneDNN builds its kernel on the first call
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return 1000 * statistics.median(runs)


def time_conv(c_in: int, c_out: int, side: int, batch: int, repeats: int) -> dict[str, float]:
    cl = torch.channels_last
    x = torch.randn(batch, c_in, side, side, dtype=torch.bfloat16).contiguous(memory_format=cl)
    w = torch.randn(c_out, c_in, 3, 3, dtype=torch.bfloat16).contiguous(memory_format=cl)
    y = torch.nn.functional.conv2d(x, w, padding=1)
    g = torch.randn_like(y)

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(
            g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask
        )

    return {
        "forward_ms": median_ms(lambda: torch.nn.functional.conv2d(x, w, padding=1), repeats),
        "input_grad_ms": median_ms(backward([True, False, False]), repeats),
        "weight_grad_ms": median_ms(backward([False, True, False]), repeats),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cpu_conv_threads.jsonl"))
    args = ap.parse_args()
    for threads in args.threads:
        torch.set_num_threads(threads)
        load = os.getloadavg()[0]
        total: dict[str, float] = {}
        for c_in, c_out, side in SHAPES:
            ms = time_conv(c_in, c_out, side, args.batch, args.repeats)
            for k, v in ms.items():
                total[k] = total.get(k, 0.0) + v
            row = {"conv": f"{c_in}->{c_out} at {side}x{side}", "threads": threads, "batch": args.batch, **ms}
            print(json.dumps(append_row(Path(args.out), {**row, "load": load})), flush=True)
        row = {"conv": "all six", "threads": threads, "batch": args.batch, **total, "load": load}
        print(json.dumps(append_row(Path(args.out), row)), flush=True)


if __name__ == "__main__":
    main()
