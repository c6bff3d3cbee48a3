"""The frozen-feature baseline of benchmarks/finetune_photos.py: logistic regression on EfficientNet-Lite0's
pooled ImageNet features (no fine-tuning at all), trained on the cnnlab run's training photos.

    python benchmarks/linear_probe.py --photos PHOTOS --weights lite0.safetensors --split RUN/split.csv
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import timm
import torch
from plain_timm_finetune import Photos, items_of  # the sibling script (run from benchmarks/)
from safetensors.torch import load_file
from sklearn.linear_model import LogisticRegression
from torch.utils.data import DataLoader
from torchvision import transforms


@torch.no_grad()
def features(model, items, transform) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1280) pooled features of an eval-mode network, and the labels."""
    xs, ys = [], []
    for x, y in DataLoader(Photos(items, transform), batch_size=100):
        xs.append(model.forward_head(model.forward_features(x), pre_logits=True).numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--image-size", type=int, default=96)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    size = (args.image_size, args.image_size)
    tf = transforms.Compose(
        [transforms.Resize(size), transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
    )
    train, test, _ = items_of(Path(args.photos), Path(args.split))
    model = timm.create_model("efficientnet_lite0").eval()
    model.load_state_dict(load_file(args.weights))
    (xtr, ytr), (xte, yte) = features(model, train, tf), features(model, test, tf)
    clf = LogisticRegression(C=1.0, max_iter=3000).fit(xtr, ytr)
    acc = float((clf.predict(xte) == yte).mean())
    print(json.dumps({"accuracy": acc, "seconds": time.perf_counter() - t0}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
