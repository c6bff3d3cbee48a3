"""The two parts of MNIST's fast recipe that issue 30's profile found slower than the lean script.

1. Training steps of ``fast_cnn`` 16-32-64 at batch 128 on real MNIST images, three ways in one process,
   interleaved over rounds: the lean script's batches (normalised tensors in memory, one ``torch.roll``
   of up to 2 px per batch), cnnlab's ``TensorLoader`` with its per-image shifts done in line, and the
   same loader with the background prefetch thread. Each at every thread count given.
2. Scoring 10,000 test-sized images with the same network in eval mode at several batch sizes
   (``torch.inference_mode``), which shows why ``configs/mnist_fast.yaml`` scores in batches of 250.

Prints the minimum over rounds of each (seconds). Compare the rows of one run only.

Run:  python benchmarks/bench_mnist_parts.py --data-root ../shared/data [--steps 50] [--rounds 3] [--threads 2 1]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.data.augment import crop_preset
from cnnlab.data.datasets import load_dataset
from cnnlab.data.loaders import TensorLoader, to_tensor_images
from cnnlab.models.fast import fast_cnn


def mnist_train(root: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` MNIST training images, uint8 (n, 1, 28, 28), and their labels, read as cnnlab reads them."""
    ds = load_dataset("mnist", root)
    return to_tensor_images(ds.train_images[:n]), torch.from_numpy(ds.train_labels[:n].astype(np.int64))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    args = ap.parse_args()
    images, labels = mnist_train(args.data_root, 128 * args.steps)
    lean_x = ((images.float() / 255 - 0.1307) / 0.3081).contiguous(memory_format=torch.channels_last)
    model = fast_cnn(widths=[16, 32, 64]).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)

    def lean_batches():
        for ib in torch.randperm(len(labels)).split(128):
            dy, dx = torch.randint(-2, 3, (2,)).tolist()
            yield torch.roll(lean_x[ib], shifts=(dy, dx), dims=(2, 3)), labels[ib]

    def loader(prefetch: bool):
        return TensorLoader(
            images, labels, 128, [0.1307], [0.3081], shuffle=True, augment=crop_preset(), channels_last=True,
            prefetch=prefetch,
        )  # fmt: skip

    def train(batches) -> None:
        model.train()
        for x, y in batches:
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    cases = {"lean roll": lean_batches, "cnnlab in line": lambda: loader(False), "cnnlab thread": lambda: loader(True)}
    train(lean_batches())  # warm-up
    times: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for threads in args.threads:
            torch.set_num_threads(threads)
            for name, make in cases.items():
                start = time.perf_counter()
                train(make())
                times.setdefault(f"{args.steps} steps, {threads} thread(s), {name}", []).append(
                    time.perf_counter() - start
                )
    test = torch.randn(10_000, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    model.eval()
    torch.set_num_threads(max(args.threads))
    for _ in range(args.rounds):
        for batch in (128, 250, 500, 1000, 2000):
            start = time.perf_counter()
            with torch.inference_mode():
                for i in range(0, len(test), batch):
                    model(test[i : i + batch])
            times.setdefault(f"score 10,000 images at batch {batch}", []).append(time.perf_counter() - start)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, minimum of {args.rounds} rounds:")
    for name, ts in times.items():
        print(f"  {name:<45} {min(ts):6.3f} s")


if __name__ == "__main__":
    main()
