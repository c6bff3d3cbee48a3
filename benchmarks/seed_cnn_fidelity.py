"""Seed 000's own CIFAR-10 pipeline, as its text describes it, for comparison with cnnlab's run of its recipe.

Issue 18, item 4: seed 000 expects 75-85 % test accuracy from its CNN; ``cnnlab train --config
configs/seed_cnn_cifar10.yaml`` ended at 67.44 %. This script trains the seed's pipeline written from
the seed's text alone, with torchvision's per-image transforms in a ``DataLoader`` (no cnnlab code),
so the curves can be set side by side:

* data: the CIFAR-10 JPEG copy (``cifar10-jpeg/train.tar``, ``test.tar``) through ``ImageFolder``;
  45,000 / 5,000 train/validation split (random, seeded);
* augmentation (training only), in the seed's order: horizontal flip (p 0.5), random crop 32 with
  padding 4, rotation +/-15 degrees, colour jitter (brightness, contrast, saturation 0.2); then
  ``ToTensor`` and normalisation with the seed's mean (0.4914, 0.4822, 0.4465) and std (0.2470,
  0.2435, 0.2616);
* network: three Conv3x3(pad 1)-BN-ReLU-MaxPool2-Dropout2d(0.3) blocks of 32, 64, 128 filters, then
  Linear 2048-512, BN, ReLU, Dropout(0.5), Linear 512-256, BN, ReLU, Dropout(0.5), Linear 256-10
  (1,278,218 parameters);
* training: Adam (lr 1e-3, weight decay 1e-4 as L2), batch 64, cross-entropy, gradient clipping at
  norm 1.0, ReduceLROnPlateau on the validation loss (factor 0.5, patience 3, min 1e-6).

Prints one JSON line per epoch (train loss/accuracy as averaged over the epoch, validation and test
loss/accuracy, LR, seconds) and appends them to ``--out``.

Run:  python benchmarks/seed_cnn_fidelity.py --data-root ../shared/data --epochs 5 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def seed_cnn(num_classes: int = 10) -> nn.Module:
    def block(c_in, c_out):
        conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        return [conv, nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout2d(0.3)]

    def fc(f_in, f_out):
        return [nn.Linear(f_in, f_out), nn.BatchNorm1d(f_out), nn.ReLU(), nn.Dropout(0.5)]

    return nn.Sequential(
        *block(3, 32),
        *block(32, 64),
        *block(64, 128),
        nn.Flatten(),
        *fc(2048, 512),
        *fc(512, 256),
        nn.Linear(256, num_classes),
    )


def extract(root: Path, dest: Path) -> Path:
    for split in ("train", "test"):
        if not (dest / split).is_dir():
            with tarfile.open(root / "cifar10-jpeg" / f"{split}.tar") as tar:
                tar.extractall(dest, filter="data")
    return dest


def loaders(folder: Path, seed: int, workers: int) -> tuple[DataLoader, DataLoader, DataLoader]:
    train_tf = transforms.Compose(
        [
            transforms.RandomHorizontalFlip(),
            transforms.RandomCrop(32, padding=4),
            transforms.RandomRotation(15),
            transforms.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    test_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    train_aug = datasets.ImageFolder(folder / "train", train_tf)
    train_plain = datasets.ImageFolder(folder / "train", test_tf)
    order = torch.randperm(len(train_aug), generator=torch.Generator().manual_seed(seed)).tolist()
    train, val = Subset(train_aug, order[5000:]), Subset(train_plain, order[:5000])
    test = datasets.ImageFolder(folder / "test", test_tf)
    kw = dict(num_workers=workers, persistent_workers=workers > 0)
    return (
        DataLoader(train, batch_size=64, shuffle=True, **kw),
        DataLoader(val, batch_size=256, **kw),
        DataLoader(test, batch_size=256, **kw),
    )


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, loss_fn) -> tuple[float, float]:
    model.eval()
    loss = correct = n = 0
    for x, y in loader:
        out = model(x)
        loss += loss_fn(out, y).item() * len(y)
        correct += (out.argmax(1) == y).sum().item()
        n += len(y)
    return loss / n, correct / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    ap.add_argument("--jpeg-dir", help="already extracted train/ and test/ folders (default: a temporary copy)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "seed_cnn_fidelity.jsonl"))
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.jpeg_dir) if args.jpeg_dir else extract(Path(args.data_root), Path(tmp))
        train, val, test = loaders(folder, args.seed, args.workers)
        model = seed_cnn()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=3, min_lr=1e-6)
        loss_fn = nn.CrossEntropyLoss()
        for epoch in range(1, args.epochs + 1):
            start, model = time.perf_counter(), model.train()
            total = correct = n = 0
            for x, y in train:
                out = model(x)
                loss = loss_fn(out, y)
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                total += loss.item() * len(y)
                correct += (out.argmax(1) == y).sum().item()
                n += len(y)
            val_loss, val_acc = evaluate(model, val, loss_fn)
            sched.step(val_loss)
            test_loss, test_acc = evaluate(model, test, loss_fn)
            row = {
                "pipeline": "seed-torchvision",
                "seed": args.seed,
                "epoch": epoch,
                "train_loss": total / n,
                "train_acc": correct / n,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "test_acc": test_acc,
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - start,
                "load": os.getloadavg()[0],
            }
            print(json.dumps(row), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
