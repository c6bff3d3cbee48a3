"""resolve_recipe, the one place every auto/null value of the recipe is decided and explained; the
zero head and the lag-free LR suggestion it relies on. No training here: fast unit tests."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.config import Config, apply_overrides
from cnnlab.engine.lr_find import centred, suggest
from cnnlab.errors import CnnlabError
from cnnlab.finetune.recipe import FITTED_HEAD_LR, HEAD_LR_CEILING, NEW_HEAD_LR, resolve_recipe
from cnnlab.finetune.transfer import zero_head
from cnnlab.models import create_model


def _staged(**overrides) -> Config:
    return apply_overrides(Config(), {"model.pretrained": "weights.pth", "train.epochs": "3", **overrides})


def _model():
    return create_model("seed_cnn", num_classes=4, in_channels=3, input_size=16)


def test_a_fitted_head_needs_no_head_epoch_and_no_lr_finder():
    lines: list[str] = []
    cfg = resolve_recipe(_staged(**{"model.head_init": "fit"}), n_train=540, log=lines.append)  # no model yet
    assert (cfg.model.finetune, cfg.model.head_init, cfg.model.head_epochs) == ("staged", "fit", 0)
    assert (cfg.sched.name, cfg.sched.restarts, cfg.optim.name) == ("onecycle", [], "adamw")
    assert cfg.optim.lr == FITTED_HEAD_LR["adamw"]  # decided without the model: nothing to sweep
    assert (cfg.model.body_lr_share, cfg.model.lr_decay) == (1.0, 1.0)  # LP-FT: one rate for every layer
    assert "model.head_epochs 0 (the fitted head needs no head-only epoch)" in lines[0]
    assert "optim.lr 0.0001 (adamw's rate for fine-tuning from a fitted head)" in lines[0]
    assert "model.body_lr_share 1 (LP-FT: the fitted head is not new, one rate for every layer)" in lines[0]
    cfg = resolve_recipe(cfg, _model(), find_lr=lambda m, o: 1 / 0, n_train=540, log=lines.append)
    assert cfg.optim.lr == FITTED_HEAD_LR["adamw"] and cfg.model.lr_decay == 1.0
    given = _staged(**{"model.head_init": "fit", "model.head_epochs": "1"})
    given = resolve_recipe(given, n_train=540, log=lines.append)
    assert (given.model.head_init, given.model.head_epochs, given.sched.restarts) == ("fit", 1, [1])
    lamb = _staged(**{"optim.name": "lamb", "model.head_init": "fit"})
    lamb = resolve_recipe(lamb, _model(), find_lr=lambda m, o: 4e-4, log=lines.append)
    assert lamb.optim.lr == 4e-4  # an optimiser without a fitted-head rate: the finder's
    with pytest.raises(CnnlabError, match="model.head_init=fit fits the new head .* give --pretrained"):
        resolve_recipe(apply_overrides(Config(), {"model.head_init": "fit"}), log=lines.append)
    plain = resolve_recipe(Config(), _model(), n_train=540, log=lambda s: None)
    assert plain.model.head_init == "zero"  # no pretrained weights: nothing to fit on


def test_every_staged_value_is_decided_once_with_its_reason():
    lines: list[str] = []
    cfg = resolve_recipe(_staged(), n_train=540, log=lines.append)  # before the loaders: no model yet
    assert (cfg.model.finetune, cfg.sched.name, cfg.sched.restarts) == ("staged", "onecycle", [1])
    assert (cfg.model.head_init, cfg.model.head_epochs, cfg.model.lr_decay) == ("zero", 1, 1.0)
    assert "model.head_init zero (trained alone first; model.head_init=fit fits it on the frozen" in lines[0]
    assert "model.lr_decay 1 (every block of the body at the same rate)" in lines[0]
    assert (cfg.optim.name, cfg.model.bn_stats, cfg.model.body_lr_share) == ("adamw", "pretrained", 0.1)
    assert cfg.data.batch_size == 16 and cfg.data.eval_batch_size == 64
    assert "data.batch_size 16 (about 540 training images: 34 steps an epoch)" in lines[0]
    assert "data.eval_batch_size 64 (4 training batches: activations that stay in cache)" in lines[0]
    # AdamW's new head: its rate without the LR finder, decided before the model exists
    assert cfg.optim.lr == NEW_HEAD_LR["adamw"] == 2e-3
    assert "optim.lr 0.002 (adamw's rate for a new head, no LR finder: 'cnnlab lr-find' sweeps it)" in lines[0]
    again: list[str] = []
    assert resolve_recipe(cfg, _model(), find_lr=lambda m, o: 1 / 0, n_train=540, log=again.append) == cfg
    assert again == []  # a resolved config (config.yaml, --resume) is left as it is, the finder never called


def test_sgd_takes_the_lr_finders_rate_held_at_its_ceiling():
    lines: list[str] = []
    sgd = resolve_recipe(_staged(**{"optim.name": "sgd"}), n_train=540, log=lines.append)
    assert sgd.optim.lr is None  # the rate needs the model: the finder sweeps it
    calls = []
    found = resolve_recipe(sgd, _model(), find_lr=lambda m, optim: calls.append(optim.name) or 0.01, log=lines.append)
    assert calls == ["sgd"] and found.optim.lr == 0.01  # the finder probes with the optimiser that will train
    assert lines[-1] == "chosen: optim.lr 0.01 (the LR finder, above)"
    held = resolve_recipe(sgd, _model(), find_lr=lambda m, o: 0.7, log=lines.append)
    assert held.optim.lr == HEAD_LR_CEILING["sgd"] == 0.05
    assert "optim.lr 0.05 (the LR finder's 7.00e-01 held at sgd's fine-tuning ceiling)" in lines[-1]
    adagrad = resolve_recipe(_staged(**{"optim.name": "adagrad"}), _model(), find_lr=lambda m, o: 0.3)
    assert adagrad.optim.lr == 0.3  # no ceiling known for it: the finder's own pick


def test_the_scoring_batch_follows_the_training_batch_unless_given():
    given = resolve_recipe(_staged(**{"data.batch_size": "32"}), n_train=540, log=lambda s: None)
    assert (given.data.batch_size, given.data.eval_batch_size) == (32, 128)
    kept = resolve_recipe(_staged(**{"data.eval_batch_size": "500"}), n_train=540, log=lambda s: None)
    assert (kept.data.batch_size, kept.data.eval_batch_size) == (16, 500)
    big = resolve_recipe(_staged(**{"data.batch_size": "512"}), n_train=50_000, log=lambda s: None)
    assert big.data.eval_batch_size == 1000  # never above the default
    plain = resolve_recipe(Config(), _model(), n_train=540, log=lambda s: None)
    assert plain.data.eval_batch_size == 1000  # training from scratch: unchanged


def test_given_values_are_kept_and_big_data_updates_batchnorm():
    cfg = resolve_recipe(_staged(**{"data.batch_size": "64", "optim.lr": "0.01"}), _model(), n_train=50_000)
    assert cfg.data.batch_size == 64 and cfg.optim.lr == 0.01 and cfg.model.bn_stats == "update"
    plain = resolve_recipe(Config(), _model(), n_train=540, log=lambda s: None)
    assert (plain.optim.name, plain.optim.lr, plain.data.batch_size) == ("adam", 1e-3, 128)
    assert plain.model.bn_stats == "update"
    with pytest.raises(CnnlabError, match="model.bn_stats must be one of auto, pretrained, update"):
        resolve_recipe(_staged(**{"model.bn_stats": "frozen"}), log=lambda s: None)


def test_the_recipe_keeps_the_checkpoint_with_the_lowest_validation_loss_unless_told():
    lines: list[str] = []
    cfg = resolve_recipe(_staged(), n_train=356, log=lines.append)
    assert cfg.train.early_stop_metric == "val_loss"
    assert "train.early_stop_metric val_loss (a few validation photos tie on accuracy" in lines[0]
    given = resolve_recipe(_staged(**{"train.early_stop_metric": "val_macro_f1"}), n_train=356, log=lambda s: None)
    assert given.train.early_stop_metric == "val_macro_f1"
    assert resolve_recipe(Config(), n_train=356, log=lambda s: None).train.early_stop_metric == "val_acc"


def test_a_zero_head_starts_at_chance_whatever_the_features():
    model = _model().eval()
    zero_head(model)
    x = 100 * torch.randn(8, 3, 16, 16)  # features of any scale
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(x), torch.zeros(8, dtype=torch.long))
    assert float(loss) == pytest.approx(math.log(4), abs=1e-6)


def test_the_suggestion_is_read_without_the_running_averages_lag():
    lrs = [10 ** (-6 + i * 0.15) for i in range(40)]  # a short sweep: 40 steps over six decades
    loss = [2 - math.tanh(3 * (-6 + i * 0.15 + 3)) for i in range(40)]  # falls fastest at 1e-3
    ema, avg = [], 0.0
    for i, v in enumerate(loss):
        avg = 0.95 * avg + 0.05 * v
        ema.append(avg / (1 - 0.95 ** (i + 1)))
    lagged, _ = suggest(lrs, ema)
    found, _ = suggest(lrs, centred(loss))
    assert math.log10(lagged) > -2.8  # the running average puts it a third of a decade or more too high
    assert abs(math.log10(found) + 3) < 0.2


def test_colour_images_get_flips_only_under_the_recipe():
    lines: list[str] = []
    colour = resolve_recipe(_staged(), n_train=540, channels=3, log=lines.append)
    assert colour.data.augment == "flip"
    assert "data.augment flip (a short fine-tune of pretrained features: horizontal flips only)" in lines[0]
    assert resolve_recipe(_staged(), n_train=540, channels=1, log=lines.append).data.augment == "auto"  # digits
    given = _staged(**{"data.augment": "seed"})
    assert resolve_recipe(given, n_train=540, channels=3, log=lines.append).data.augment == "seed"
    assert resolve_recipe(Config(), n_train=540, channels=3, log=lines.append).data.augment == "auto"
