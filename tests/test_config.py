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


# ---- every value checked before any data is read ---------------------------------------------------
@pytest.fixture
def no_data(monkeypatch):
    """Fail the test if training gets as far as reading data: every refusal must come before."""

    def read(*args, **kwargs):
        raise AssertionError("the data was read before the value was refused")

    monkeypatch.setattr("cnnlab.api.load_data", read)


def _train_error(tmp_path, capsys, *flags) -> str:
    from cnnlab.cli.main import main

    code = main(["train", "--data", "digits", "--out", str(tmp_path / "runs"), *map(str, flags)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("cnnlab: error:") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()
    return err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seed", "-1"], "train.seed must be 0 or more"),
        (["--seed", str(2**32)], "train.seed must be at most 4,294,967,295"),
        (["--optim.eps", "-1"], "optim.eps must be above 0"),
        (["--sched.pct_start", "5"], "sched.pct_start must be in (0, 1)"),
        (["--lr", "0"], "optim.lr must be above 0"),
        (["--lr", ".nan"], "'optim.lr' expects a finite number"),
        (["--optim.weight_decay=-.inf"], "'optim.weight_decay' expects a finite number"),
        (["--optim.lr", "1e999"], "'optim.lr' expects a finite number"),
        (["--sched.patience", "-1"], "sched.patience must be 0 or more"),
        (["--optim.momentum", "1.5"], "optim.momentum must be in [0, 1)"),
        (["--optim.betas", "[0.9, 1.5]"], "optim.betas must be a list whose every value is in [0, 1)"),
        (["--image-size", "100000"], "data.image_size must be at most 4,096"),
        (["--image-size", "0"], "data.image_size must be at least 1"),
        (["--data.num_workers", "-2"], "data.num_workers must be 0 or more"),
        (["--data.channels", "2"], "data.channels must be one of 1, 3"),
        (["--data.val_fraction", "1"], "data.val_fraction must be in [0, 1)"),
        (["--sched.factor", "1"], "sched.factor must be in (0, 1)"),
        (["--train.early_stop_patience", "-3"], "train.early_stop_patience must be 0 or more"),
        (["--train.device", "gpu"], "train.device must be auto, cpu, mps, cuda or cuda:N"),
        (["--optim.group_lr", "{fc*: -1}"], "optim.group_lr must be a list whose every value is above 0"),
        (["--optim.group_lr", "{fc*: fast}"], "'optim.group_lr.fc*' expects float"),
        (["--sched.milestones", "[-5]"], "sched.milestones must be a list whose every value is 0 or more"),
        (["--data.name", "a\x00b"], "NUL"),
        (["--model.kwargs", "{1: 2}"], "model.kwargs must be a mapping of argument names (1 is not one)"),
        # names looked up in a registry: refused before the data, not after it or at the first step
        (["--optimizer", "adamm"], "unknown optimizer 'adamm'. Did you mean 'adam'"),
        (["--scheduler", "cosin"], "unknown scheduler 'cosin'"),
        (["--train.loss", "focall"], "unknown loss 'focall'"),
        (["--train.init", "he"], "unknown weight initialisation 'he'"),
        (["--augment", "flipp"], "unknown augmentation 'flipp'"),
        (["--finetune", "stagedd"], "unknown model.finetune 'stagedd'"),
        (["--model.finetune", "progressive", "--model.unfreeze_schedule", "0:0,x"], "bad unfreeze schedule entry"),
        # a misspelt builder argument: named, with the ones the builder takes
        (["--model.kwargs", "{dropuot: 0.1}"], "model 'seed_cnn' has no argument 'dropuot'"),
        (["--model.kwargs", "{conv_dropout: 0.1, fc_dropuot: 0.2}"], "It accepts: conv_dropout, fc_dropout"),
        (["--model", "resnet18", "--model.kwargs", "{widht: 2}"], "model 'resnet18' has no argument 'widht'"),
        (["--model", "plain_mlp", "--model.kwargs", "{dropout: high}"], "model.kwargs do not suit model 'plain_mlp'"),
    ],
)
def test_values_are_refused_before_any_data_is_read(tmp_path, capsys, no_data, flags, message):
    # Each used to end in a traceback (seed, eps, pct_start, NaN, kwargs), run with a value torch or NumPy
    # later refused, or fail only after the data had been read (optimiser, schedule, loss, init names).
    assert message in _train_error(tmp_path, capsys, *flags)


def test_a_config_file_of_nested_aliases_is_refused_at_once(tmp_path, capsys, no_data):
    # The 1 KB file: ten levels of ten aliases inside model.kwargs made `cnnlab train` allocate 11.9 GB.
    levels = ["    a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"    {n}: &{n} [{', '.join([f'*{p}'] * 10)}]" for p, n in zip("abcdefghi", "bcdefghij")]
    path = tmp_path / "bomb.yaml"
    path.write_text("model:\n  kwargs:\n" + "\n".join(levels) + "\n")
    assert path.stat().st_size < 1100
    err = _train_error(tmp_path, capsys, "--config", path)
    assert f"config file {path} expands to more than 1,000,000 values" in err
    inline = "{a: &a [1, 1, 1, 1, 1, 1, 1, 1], " + ", ".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 8)}]" for p, n in zip("abcdefgh", "bcdefghi")
    )
    _train_error(tmp_path, capsys, "--model.kwargs", inline + "}")  # the flag's value is YAML too: not a hang


def test_every_key_declares_what_it_accepts():
    """A key is a bool (its type says it all), a path or URL (any text), or declares a rule or a registry."""
    from dataclasses import fields

    from cnnlab.config import leaf_fields, leaf_rules

    paths = {"data.root", "data.split_manifest", "model.pretrained", "model.weights", "model.weights_mirror"}
    rules = leaf_rules()
    marked = {f"{s.name}.{f.name}" for s in fields(Config) for f in fields(getattr(Config(), s.name))}
    assert set(rules) == marked == set(leaf_fields())
    free = {k for k, rule in rules.items() if rule is None and leaf_fields()[k] is not bool}
    assert free == paths


def test_every_registry_name_a_config_declares_has_a_lookup():
    from dataclasses import fields

    from cnnlab.workflow import NAME_LOOKUPS

    kinds = {
        f.metadata["names"] for s in fields(Config) for f in fields(getattr(Config(), s.name)) if "names" in f.metadata
    }
    assert kinds == set(NAME_LOOKUPS)


def test_help_says_what_each_key_accepts(capsys):
    import re

    from cnnlab.cli.main import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert re.search(r"--sched\.pct_start VALUE\s+float: \(0, 1\)", out)
    assert re.search(r"--train\.seed VALUE\s+int: 0\.\.4,294,967,295", out)
    assert re.search(r"--optim\.lr VALUE\s+float \| None: > 0", out)
