"""The baseline of benchmarks/finetune_photos.py: fine-tuning EfficientNet-Lite0 the way a practitioner
writes it with timm + torchvision, no cnnlab in the training path.

Both variants: one epoch training only the new classifier (AdamW, lr 1e-3, weight decay 0.01), then every
layer: AdamW with the body at 1e-4 and the head at 1e-3 under a cosine decay over the remaining epochs;
batch 32, horizontal flips, the images resized to --image-size and normalised as the weights expect.

- ``--variant expert`` (the reference): what a competent practitioner adds for a few hundred photos:
  the new classifier zero-initialised (timm's EfficientNet init draws it from +-1/sqrt(classes), which on
  ImageNet features gives logits in the tens and a first loss near 6, more than one epoch of AdamW at
  1e-3 can undo), the BatchNorm layers kept in eval mode throughout (their ImageNet running
  statistics, not the noisy ones of 32-photo batches; their scale and shift still train), and the
  network in channels_last memory format (PyTorch's CPU performance guide: oneDNN's faster convolutions;
  on the 2-core Xeon, one thread, 96 px, an all-layer epoch took 7.0 s instead of 11.6 s);
- ``--variant naive``: the same schedule with timm's own head init and BatchNorm in training mode, as
  the first tutorial one finds writes it.

It trains on the training images of the cnnlab run it is compared with (``--split``: that run's
split.csv, so both see the same photos) and prints one JSON line with the test accuracy.

    python benchmarks/plain_timm_finetune.py --photos PHOTOS --weights lite0.safetensors --split RUN/split.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import timm
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms


class Photos(Dataset):
    def __init__(self, items: list[tuple[Path, int]], transform):
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        return self.transform(Image.open(path).convert("RGB")), label


def items_of(photos: Path, split_csv: Path) -> tuple[list, list, list[str]]:
    """(train, test) as (path, label) lists: train = the cnnlab run's train rows, test = photos/test/."""
    classes = sorted(p.name for p in (photos / "test").iterdir() if p.is_dir())
    with split_csv.open() as f:
        rows = list(csv.DictReader(f))  # split, source (relative to the folder), label
    train = [
        (photos / r["source"], classes.index(Path(r["source"]).parent.name)) for r in rows if r["split"] == "train"
    ]
    test = [(p, i) for i, c in enumerate(classes) for p in sorted((photos / "test" / c).glob("*.jpg"))]
    return train, test, classes


def epoch(model, loader, optimizer, schedule=None, *, freeze_bn: bool = False) -> float:
    model.train()
    if freeze_bn:  # keep the pretrained running statistics
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    total, n = 0.0, 0
    for x, y in loader:
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        total, n = total + float(loss) * len(y), n + len(y)
    return total / n


@torch.no_grad()
def accuracy(model, loader) -> float:
    model.eval()
    hits = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader)
    return hits / len(loader.dataset)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", required=True)
    p.add_argument("--weights", required=True, help="EfficientNet-Lite0 in timm's names (.safetensors)")
    p.add_argument("--split", required=True, help="split.csv of the cnnlab run to compare with")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", choices=("expert", "naive"), default="expert")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    norm = transforms.Normalize([0.5] * 3, [0.5] * 3)  # what these weights were trained with
    size = (args.image_size, args.image_size)
    train_tf = transforms.Compose(
        [transforms.Resize(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm]
    )
    test_tf = transforms.Compose([transforms.Resize(size), transforms.ToTensor(), norm])
    train, test, classes = items_of(Path(args.photos), Path(args.split))
    train_dl = DataLoader(Photos(train, train_tf), batch_size=32, shuffle=True, num_workers=0)
    test_dl = DataLoader(Photos(test, test_tf), batch_size=200, num_workers=0)

    model = timm.create_model("efficientnet_lite0", num_classes=len(classes))
    state = {k: v for k, v in load_file(args.weights).items() if not k.startswith("classifier.")}
    model.load_state_dict(state, strict=False)
    head, body = model.get_classifier(), [p for n, p in model.named_parameters() if not n.startswith("classifier.")]
    expert = args.variant == "expert"
    if expert:  # a new head that starts at chance, whatever the features' scale; the CPU's fast layout
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        model = model.to(memory_format=torch.channels_last)

    for p_ in body:  # epoch 1: the new head only
        p_.requires_grad_(False)
    head_opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.01)
    losses = [epoch(model, train_dl, head_opt, freeze_bn=expert)]
    for p_ in body:  # then everything, the body ten times slower, cosine decay
        p_.requires_grad_(True)
    opt = torch.optim.AdamW(
        [{"params": body, "lr": 1e-4}, {"params": head.parameters(), "lr": 1e-3}], weight_decay=0.01
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, (args.epochs - 1) * len(train_dl)))
    for _ in range(args.epochs - 1):
        losses.append(epoch(model, train_dl, opt, sched, freeze_bn=expert))
    acc = accuracy(model, test_dl)
    print(json.dumps({"accuracy": acc, "train_losses": losses, "seconds": time.perf_counter() - t0}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
