from pathlib import Path

import pytest
import yaml

from cnnlab.config import Config, apply_overrides, load_config, save_config
from cnnlab.errors import CnnlabError


def test_yaml_round_trip(tmp_path):
    cfg = apply_overrides(Config(), {"optim.lr": "0.01", "data.name": "cifar10", "model.kwargs": "{dropout: 0.2}"})
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert cfg.optim.lr == 0.01 and cfg.model.kwargs == {"dropout": 0.2}


def test_defaults_are_the_seed_recipe():
    from cnnlab.finetune.recipe import resolve_recipe

    c = resolve_recipe(Config(), log=lambda s: None)  # without pretrained weights the auto values are seed 000's
    assert c.model.finetune == "finetune_all" and c.model.lr_decay == 1.0
    assert (c.optim.name, c.optim.lr, c.optim.weight_decay) == ("adam", 1e-3, 1e-4)
    assert (c.sched.name, c.sched.factor, c.sched.patience, c.sched.min_lr) == ("plateau", 0.5, 3, 1e-6)
    assert c.train.grad_clip == 1.0 and c.train.early_stop_patience == 5 and c.train.early_stop_metric == "val_acc"


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    with pytest.raises(CnnlabError, match=r"'optim\.lrr'.*'optim\.lr'"):
        apply_overrides(Config(), {"optim.lrr": "0.1"})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"train": {"epoch": 3}}))
    with pytest.raises(CnnlabError, match=r"'train\.epoch'.*'train\.epochs'"):
        load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("train.epochs", "three"),
        ("optim.lr", "fast"),
        ("train.epochs", "2.5"),
        ("optim.betas", "[0.9]"),
        ("train.channels_last", "maybe"),
    ],
)
def test_wrong_type_is_named(key, value):
    with pytest.raises(CnnlabError, match=key.replace(".", r"\.")):
        apply_overrides(Config(), {key: value})


def test_nullable_and_int_to_float():
    c = apply_overrides(Config(), {"train.grad_clip": "null", "optim.lr": "1", "data.root": "null"})
    assert c.train.grad_clip is None and c.optim.lr == 1.0 and isinstance(c.optim.lr, float)
    assert c.data.root is None
    # a string field keeps numeric-looking text as text
    assert apply_overrides(Config(), {"output.name": "1e-3"}).output.name == "1e-3"


def test_every_shipped_recipe_loads():
    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert configs, "configs/ should ship recipes"
    for path in configs:
        assert isinstance(load_config(path), Config), path


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(CnnlabError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "broken.yaml").write_text("train: [unclosed")
    with pytest.raises(CnnlabError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
