"""Training throughput: our loop vs the bare train step vs a seed-style reference pipeline.

All three train the same model at the same batch size on CIFAR-shaped images, in one process,
interleaved over several rounds so that machine noise hits them alike; the reported figures are
ratios of medians measured in this one run.

- bare:      the fastest step our own options reach: preloaded, already normalised float tensors in
             channels_last, forward + backward + Adam step; no augmentation, no data movement.
- ours:      cnnlab's real loop (``train_one_epoch`` over a ``TensorLoader``): uint8 data in memory,
             per-batch gather, float conversion, vectorised augmentation (crop+flip as one gather,
             rotation as one grid_sample), fused normalisation + channels_last copy, gradient
             clipping, NaN check, step log; the next batch is prepared in a background thread while
             the current one trains (``prefetch``).
- ours-sync: the same with prefetching off (augmentation on the training thread), to show its share.
- reference: the seed's way: torchvision per-image PIL transforms (RandomCrop(32, padding=4),
             RandomHorizontalFlip, RandomRotation(15), ColorJitter(0.2, 0.2, 0.2), ToTensor,
             Normalize) in a DataLoader with 2 workers, then the same train step (no channels_last).

Run:  python benchmarks/bench_loop.py [--images 2560] [--batch 64] [--rounds 3] [--augment seed]
      [--data-root ../shared/data]   (uses the CIFAR-10 JPEG copy when found, else random images)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import datetime, timezone

import numpy as np
import torch
from torch import nn

# Images per CPU-second (all threads of this process): the work each loop does, whatever the load.
CPU: dict[str, list[float]] = {"bare": [], "ours": [], "ours-sync": []}


def load_images(n: int, root: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    if root:
        try:
            from cnnlab.data.datasets import load_dataset

            ds = load_dataset("cifar10", root=root)
            return ds.train_images[:n], ds.train_labels[:n], "CIFAR-10 JPEG copy"
        except Exception as exc:  # noqa: BLE001 - a benchmark falls back to synthetic data
            print(f"(CIFAR-10 not loaded: {exc}; using random images)")
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n), "random uint8 images"


def make_model(channels_last: bool) -> tuple[nn.Module, torch.optim.Optimizer]:
    from cnnlab.models import create_model

    torch.manual_seed(0)
    model = create_model("seed_cnn", num_classes=10, in_channels=3, input_size=32)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)


def bare(images, labels, batch) -> float:
    model, opt = make_model(True)
    loss_fn = nn.CrossEntropyLoss()
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    x_all = ((x_all - 0.5) / 0.25).contiguous(memory_format=torch.channels_last)
    y_all = torch.from_numpy(labels).long()
    model.train()
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(x_all) - batch + 1, batch):
        loss = loss_fn(model(x_all[i : i + batch]), y_all[i : i + batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    n = (len(x_all) // batch) * batch
    CPU["bare"].append(n / (time.process_time() - cpu))
    return n / (time.perf_counter() - start)


def ours(images, labels, batch, augment: str, prefetch: bool = True) -> float:
    from cnnlab.data.augment import build_augment
    from cnnlab.data.loaders import TensorLoader, to_tensor_images
    from cnnlab.engine.loop import StepOptions, train_one_epoch

    model, opt = make_model(True)
    loader = TensorLoader(
        to_tensor_images(images),
        torch.from_numpy(labels).long(),
        batch,
        [0.5] * 3,
        [0.25] * 3,
        shuffle=True,
        augment=build_augment(augment, 3),
        drop_last=True,
        channels_last=True,
        prefetch=prefetch,
    )
    start, cpu = time.perf_counter(), time.process_time()
    train_one_epoch(model, loader, opt, nn.CrossEntropyLoss(), StepOptions(grad_clip=1.0))
    CPU["ours" if prefetch else "ours-sync"].append(len(loader) * batch / (time.process_time() - cpu))
    return len(loader) * batch / (time.perf_counter() - start)


class _PILDataset(torch.utils.data.Dataset):
    def __init__(self, images, labels):
        from torchvision import transforms as T

        self.images, self.labels = images, labels
        self.tf = T.Compose(
            [
                T.RandomCrop(32, padding=4),
                T.RandomHorizontalFlip(),
                T.RandomRotation(15),
                T.ColorJitter(0.2, 0.2, 0.2),
                T.ToTensor(),
                T.Normalize([0.5] * 3, [0.25] * 3),
            ]
        )

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.tf(Image.fromarray(self.images[i])), int(self.labels[i])


def reference(images, labels, batch) -> float:
    model, opt = make_model(False)
    loss_fn = nn.CrossEntropyLoss()
    loader = torch.utils.data.DataLoader(
        _PILDataset(images, labels), batch_size=batch, shuffle=True, num_workers=2, drop_last=True
    )
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return len(loader) * batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2560)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--augment", default="seed")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images, labels, source = load_images(args.images, args.data_root)
    labels = np.asarray(labels, dtype=np.int64)
    runs: dict[str, list[float]] = {"bare": [], "ours": [], "ours-sync": [], "reference": []}
    bare(images[: args.batch * 4], labels[: args.batch * 4], args.batch)  # warm-up (allocator, kernels)
    for r in range(args.rounds):
        runs["bare"].append(bare(images, labels, args.batch))
        runs["ours"].append(ours(images, labels, args.batch, args.augment))
        runs["ours-sync"].append(ours(images, labels, args.batch, args.augment, prefetch=False))
        if not args.no_reference:
            runs["reference"].append(reference(images, labels, args.batch))
        print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]:.0f} img/s" for k, v in runs.items() if v))
    med = {k: statistics.median(v) for k, v in runs.items() if v}
    print(
        f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {source}, {args.images} images, batch {args.batch}, "
        f"augment {args.augment!r}, median of {args.rounds} rounds"
    )
    for k, v in med.items():
        print(f"  {k:<10} {v:8.0f} images/s")
    print(f"  ours / bare      = {med['ours'] / med['bare']:.2f}")
    print(f"  ours-sync / bare = {med['ours-sync'] / med['bare']:.2f}")
    cpu = {k: statistics.median(v) for k, v in CPU.items()}
    print(
        f"  per CPU-second: bare {cpu['bare']:.0f}, ours {cpu['ours']:.0f}, ours-sync {cpu['ours-sync']:.0f} images; "
        f"ours / bare = {cpu['ours'] / cpu['bare']:.2f} (the extra work of data preparation)"
    )
    print(f"  (load average {' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs)")
    if "reference" in med:
        print(f"  ours / reference = {med['ours'] / med['reference']:.2f}")


if __name__ == "__main__":
    main()
