"""Training-step throughput of ``airbench`` on this CPU: fp32 vs bf16 autocast, contiguous vs channels_last.

The CIFAR-10 speed recipe (``configs/cifar10_fast.yaml``) trains under bf16 autocast with
channels_last; this shows what each choice is worth on the machine at hand (AVX-512 BF16 CPUs gain
most). Each row: a fresh model, SGD-Nesterov steps on a fixed random batch, 2 warm-up steps, then
the mean of ``--steps`` timed steps, in images per second, and the epoch time for 50,000 images.
Rows run one after another in one process, so their ratios are comparable; absolute figures vary.

Run:  python benchmarks/cpu_precision.py [--widths 64 256 256] [--batch 512] [--steps 4]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from cnnlab.models import create_model


def images_per_second(widths, batch: int, steps: int, channels_last: bool, bf16: bool) -> float:
    torch.manual_seed(0)
    model = create_model("airbench", num_classes=10, in_channels=3, input_size=32, widths=widths)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(), step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 256, 256])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    print(f"airbench {args.widths}, batch {args.batch}, {torch.get_num_threads()} threads")
    base = None
    for bf16 in (False, True):
        for cl in (False, True):
            ips = images_per_second(args.widths, args.batch, args.steps, cl, bf16)
            base = base or ips
            layout, dtype = "channels_last" if cl else "contiguous", "bf16 autocast" if bf16 else "fp32"
            print(f"{dtype:<14} {layout:<14} {ips:7.0f} img/s  {50000 / ips:6.0f} s per 50k  {ips / base:.2f}x")


if __name__ == "__main__":
    main()
