"""LR range test: restores the model exactly, suggests an LR before divergence; the CLI writes its plot."""

import threading

import pytest
import torch
from torch import nn

from cnnlab.cli.main import main
from cnnlab.engine.lr_find import lr_find, suggest


def test_sweep_restores_weights_optimiser_and_rng_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 6, generator=g), torch.randint(0, 3, (256,), generator=g)
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng, gen_state = torch.get_rng_state(), g.get_state()
    res = lr_find(model, batches, opt, nn.CrossEntropyLoss(), 1e-5, 10.0, 60, generators=[g])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm running statistics included
    assert opt.param_groups[0]["lr"] == 0.01 and not opt.state  # no momentum left behind
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(g.get_state(), gen_state)
    assert res.lrs[0] == 1e-5 and 1e-5 < res.suggestion < res.lrs[-1]
    assert res.lrs == sorted(res.lrs) and "fastest" in res.reason


def test_suggestion_is_the_steepest_descent_before_the_minimum():
    lrs = [10 ** (-6 + i * 0.1) for i in range(60)]  # 1e-6 .. ~1e-0.1
    logs = torch.tensor([-6 + i * 0.1 for i in range(60)])
    loss = (2 - torch.tanh(3 * (logs + 3))).tolist()  # steepest at 1e-3, flat on both sides
    loss[50:] = [loss[49] + 0.5 * (i - 49) for i in range(50, 60)]  # divergence after 1e-1
    lr, _ = suggest(lrs, loss)
    assert abs(torch.log10(torch.tensor(lr)) + 3) < 0.15


def test_cli_writes_plot_and_prints_suggestion(tmp_path, capsys):
    out = tmp_path / "lr.png"
    code = main(
        ["lr-find", "--data", "digits", "--batch-size", "64", "--steps", "30", "--end", "1", "--output", str(out)]
        + ["--set", "train.threads=1"]
    )
    assert code == 0 and out.stat().st_size > 5000
    assert "suggested learning rate" in capsys.readouterr().out


def _images(tmp_path, n=40):
    from PIL import Image

    g = torch.Generator().manual_seed(1)
    items = []
    for i in range(n):
        pixels = torch.randint(0, 256, (8, 8, 3), dtype=torch.uint8, generator=g).numpy()
        path = tmp_path / f"{i}.png"
        Image.fromarray(pixels).save(path)
        items.append((path, i % 4))
    return items


def _make_loader(kind: str, tmp_path):
    """A shuffled, augmented loader of 40 images in batches of 8 (a data generator of its own)."""
    from cnnlab.data.augment import build_augment
    from cnnlab.data.loaders import FolderImages, FolderLoader, TensorLoader

    gen, augment = torch.Generator().manual_seed(5), build_augment("seed", 3)
    if kind.startswith("tensor"):
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=g)
        prefetch = kind == "tensor-prefetch"
        return TensorLoader(
            images, torch.arange(40) % 4, 8, [0.5] * 3, [0.25] * 3, True, augment, gen, prefetch=prefetch
        )
    workers = 2 if kind == "folder-workers" else 0
    return FolderLoader(FolderImages(_images(tmp_path), 3, 8), 8, [0.5] * 3, [0.25] * 3, True, augment, gen, workers)


def _train_after(kind: str, tmp_path, find: bool):
    """Two epochs of SGD, after an LR sweep (with its own optimiser, as the fine-tune recipe does) or not."""
    from cnnlab.engine.loop import train_one_epoch

    torch.manual_seed(0)
    model = nn.Sequential(  # BatchNorm (state) and Dropout (global RNG): both must be left as found
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Dropout(0.3), nn.Linear(8, 4),
    )  # fmt: skip
    loader, loss_fn = _make_loader(kind, tmp_path), nn.CrossEntropyLoss()
    if find:  # 12 steps of 5 batches per epoch: the sweep stops in the middle of its third pass
        probe = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        before = {k: v for k, v in vars(loader).items()}
        lr_find(model, loader, probe, loss_fn, 1e-4, 1.0, 12, diverge=1e9, generators=[loader.generator])
        assert all(p.grad is None for p in model.parameters())  # no gradient left for the first step to add
        assert vars(loader).keys() == before.keys() and all(vars(loader)[k] is v for k, v in before.items())
        assert getattr(getattr(loader, "loader", None), "_iterator", None) is None  # no worker pool left running
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = [train_one_epoch(model, loader, optimizer, loss_fn)["train_loss"] for _ in range(2)]
    return losses, model.state_dict()


@pytest.mark.parametrize("kind", ["tensor", "tensor-prefetch", "folder", "folder-workers"])
def test_training_after_a_sweep_is_the_training_without_one(kind, tmp_path):
    """The sweep leaves model, gradients, random states and the loader (epoch plan, prefetch thread,
    worker pool) exactly as it found them: the same training follows, bit for bit."""
    plain_losses, plain = _train_after(kind, tmp_path, find=False)
    losses, weights = _train_after(kind, tmp_path, find=True)
    assert losses == plain_losses
    assert all(torch.equal(weights[k], plain[k]) for k in plain)
    assert not any(t.name == "cnnlab-prefetch" for t in threading.enumerate())
