"""Every recipe in configs/ loads (strict keys and types) and names registered components."""

from pathlib import Path

import pytest

from cnnlab.config import load_config
from cnnlab.data.augment import build_augment
from cnnlab.data.tta import TTA
from cnnlab.engine.init import INITS
from cnnlab.engine.losses import LOSSES
from cnnlab.engine.optim import OPTIMIZERS
from cnnlab.engine.schedulers import SCHEDULERS
from cnnlab.models import MODELS

RECIPES = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_is_valid(path):
    from cnnlab.finetune.recipe import resolve_recipe

    cfg = resolve_recipe(load_config(path), log=lambda s: None)  # "auto" values as training resolves them
    assert cfg.model.name in MODELS and cfg.optim.name in OPTIMIZERS and cfg.sched.name in SCHEDULERS
    assert cfg.train.loss in LOSSES and cfg.train.init in INITS and cfg.train.tta in TTA
    build_augment(cfg.data.augment, 3)  # raises on an unknown op or argument
    assert path.read_text().startswith("#")  # the comment header with command and result


def test_resnet_recipe_trains_on_a_slice(fast_overrides):
    from cnnlab.api import train

    recipe = Path(__file__).resolve().parents[2] / "configs" / "resnet18_cifar10.yaml"
    ov = {**fast_overrides, "output.plots": False, "train.epochs": 1, "model.name": "fast_cnn"}
    ov.update({"data.augment": "crop_flip(pad=1)+cutout(size=2, p=0.5)", "data.batch_size": 128})
    r = train(recipe, overrides=ov, log=lambda s: None)  # digits in place of CIFAR, the recipe's other settings
    assert r.config.train.tta == "flip-translate" and r.config.train.ema == 0.999
    assert 0.0 <= r.metrics["accuracy"] <= 1.0 and (r.run_dir / "steps.csv").is_file()


def test_epoch_line_shows_the_recipes_lr_and_names_the_faster_groups_once(fast_overrides):
    # configs/cifar10_fast.yaml trains BatchNorm shifts at 442x optim.lr; its epoch lines printed 5.30e+01
    from cnnlab.api import train

    lines: list[str] = []
    ov = {**fast_overrides, "model.name": "fast_cnn", "optim.name": "sgd", "optim.lr": 0.02, "sched.name": "none"}
    ov["optim.group_lr"] = {"*.bias": 2.0}
    r = train(overrides=ov, log=lines.append)
    epoch_lines = [s for s in lines if s.startswith("epoch ")]
    assert len(epoch_lines) == 2 and all("lr 2.00e-02" in s for s in epoch_lines)
    rates = [s for s in lines if s.startswith("learning rates:")]
    assert len(rates) == 1 and "x100" in rates[0] and "bias" in rates[0]
    assert r.history[0]["lr"] == pytest.approx(0.02)  # history.csv's lr is the same rate
