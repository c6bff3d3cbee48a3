"""Transfer learning through a real training run: pretrain on the MNIST sample, fine-tune on digits."""

import copy
import csv
import re

import pytest
import torch

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.finetune.recipe import keep_frozen_bn_in_eval
from cnnlab.models import create_model
from cnnlab.runs.model_file import load_model

COMMON = {"epochs": 1, "image_size": 16, "log": lambda s: None}
QUIET = {"output.progress": False, "train.threads": 1, "output.plots": False}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pre")
    return cnnlab.train(data="mnist-sample", model="seed_cnn", out=out, overrides=QUIET, **COMMON).run_dir


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


# seed_cnn's blocks (finetune.transfer.model_blocks): features.0, features.1, features.2, classifier (the MLP head)
@pytest.mark.parametrize(
    ("strategy", "extra", "moving_prefixes"),
    [
        ("feature_extraction", {}, ("classifier.",)),  # the conv base is frozen, the MLP head learns
        ("finetune_top", {"model.finetune_blocks": 1}, ("features.2.", "classifier.")),
        ("finetune_all", {}, ("features.", "classifier.")),
    ],
)
def test_strategies_move_exactly_the_expected_parameters(pretrained, tmp_path, strategy, extra, moving_prefixes):
    pre, _ = load_model(pretrained)
    before = {k: v.clone() for k, v in pre.state_dict().items()}
    r = cnnlab.train(
        data="digits",
        model="seed_cnn",
        pretrained=str(pretrained),
        finetune=strategy,
        out=tmp_path,
        overrides={**QUIET, **extra},
        **COMMON,
    )
    after = load_model(r.run_dir)[0].state_dict()
    body = {k for k in before if not k.startswith("classifier.3.")}  # the head is new: not comparable
    moved = _changed({k: before[k] for k in body}, {k: after[k] for k in body})
    assert moved and all(k.startswith(moving_prefixes) for k in moved), sorted(moved)
    frozen = {k for k in body if not k.startswith(moving_prefixes)}
    assert not frozen & moved  # frozen blocks, their BatchNorm running statistics included, did not change
    if strategy == "feature_extraction":
        assert any("running_mean" in k for k in frozen)
    if strategy == "finetune_all":
        assert any(k.startswith("features.0.") for k in moved)  # even the first conv moved


def test_progressive_unfreezes_on_schedule(pretrained, tmp_path):
    lines = []
    cnnlab.train(
        data="digits",
        model="seed_cnn",
        pretrained=str(pretrained),
        finetune="progressive",
        out=tmp_path,
        overrides={**QUIET, "model.unfreeze_schedule": "0:0,1:all"},
        epochs=2,
        image_size=16,
        log=lines.append,
    )
    assert any("unfreezing for epoch 2" in line for line in lines)


def test_discriminative_lrs_decay_from_the_head(pretrained, tmp_path):
    from cnnlab.config import Config, ModelConfig, OptimConfig
    from cnnlab.finetune.recipe import prepare_model, with_lr_decay

    model = create_model("seed_cnn", num_classes=10, in_channels=1, input_size=16)
    prepare_model(model, Config(model=ModelConfig(pretrained=str(pretrained), lr_decay=0.5)), log=lambda s: None)
    optim = with_lr_decay(OptimConfig(lr=0.1), model, 0.5)
    lrs = optim.group_lr
    assert set(lrs) == {n for n, _ in model.named_parameters()}
    # blocks: features.0, features.1, features.2, classifier (head) -> 0.0125, 0.025, 0.05, 0.1
    assert lrs["classifier.3.weight"] == 0.1 and lrs["features.2.0.weight"] == 0.05
    assert lrs["features.0.0.weight"] == pytest.approx(0.0125)
    r = cnnlab.train(
        data="digits",
        model="seed_cnn",
        pretrained=str(pretrained),
        out=tmp_path,
        overrides={**QUIET, "model.lr_decay": 0.5},
        **COMMON,
    )
    assert r.metrics["accuracy"] > 0.1


def test_mismatched_weights_name_the_tensors(pretrained, tmp_path):
    advice = r"holds a seed_cnn network and this run builds mnist_cnn: leave --model out"
    with pytest.raises(CnnlabError, match=r"(?s)do not match.*missing from the file.*0.weight.*" + advice):
        cnnlab.train(
            data="digits", model="mnist_cnn", pretrained=str(pretrained), out=tmp_path, overrides=QUIET, **COMMON
        )


def test_a_run_folder_brings_its_architecture_and_input_size(tmp_path):
    import json

    lines = []  # demo:mnist is a fast_cnn (widths 16, 32, 64) on 1x28x28: nothing else is said
    r = cnnlab.train(data="digits", pretrained="demo:mnist", lr=0.003, epochs=1, out=tmp_path, overrides=QUIET,
                     log=lines.append)  # fmt: skip
    assert (r.config.model.name, r.config.model.kwargs) == ("fast_cnn", {"widths": [16, 32, 64]})
    assert json.loads((r.run_dir / "data.json").read_text())["input_shape"] == [1, 28, 28]
    assert any(line.startswith("model fast_cnn: the architecture of demo:mnist") for line in lines)
    assert r.metrics["accuracy"] > 0.5


def test_frozen_batchnorm_stays_in_eval_and_copies_behave():
    model = create_model("seed_cnn", num_classes=3, in_channels=1, input_size=16)
    for p in model.features.parameters():
        p.requires_grad_(False)
    keep_frozen_bn_in_eval(model)
    model.train()
    assert not model.features[0][1].training and model.classifier[1][1].training
    twin = copy.deepcopy(model)
    twin.eval()
    assert model.classifier[1][1].training  # evaluating a copy (EMA) leaves the original alone
    twin.train()
    assert twin.classifier[1][1].training and not twin.features[0][1].training


# --- the fine-tune recipe: --pretrained and nothing else ---------------------------------------------
class Killed(Exception):
    pass


def _recipe(pretrained, tmp_path, name, **kw):
    lines = []
    overrides = {**QUIET, "output.name": name, "train.early_stop_patience": None, **kw.pop("overrides", {})}
    r = cnnlab.train(
        data="digits", model="seed_cnn", pretrained=str(pretrained), out=tmp_path, overrides=overrides,
        epochs=2, log=lines.append, **kw,
    )  # fmt: skip
    return r, lines


def test_recipe_trains_the_head_first_then_everything_at_adamws_new_head_rate(pretrained, tmp_path):
    from cnnlab.engine.trainer import Trainer

    body_after_epoch_1 = {}

    def snapshot(trainer: Trainer, row):
        if trainer.epoch == 1:
            body_after_epoch_1.update({k: v.clone() for k, v in trainer.model.state_dict().items()})

    pre = load_model(pretrained)[0].state_dict()
    r, lines = _recipe(pretrained, tmp_path, "recipe", callbacks=[snapshot])
    text = "\n".join(lines)
    assert "optim.lr 0.002 (adamw's rate for a new head, no LR finder" in text and "from the LR finder" not in text
    assert "fine-tune recipe: 1 epoch(s) training only the new head at lr 2.00e-03" in text
    assert "unfreezing for epoch 2: training 4 blocks" in text
    cfg = r.config
    assert cfg.model.finetune == "staged" and cfg.sched.name == "onecycle" and cfg.sched.restarts == [1]
    assert cfg.optim.name == "adamw" and cfg.model.bn_stats == "pretrained" and cfg.data.batch_size < 128
    assert cfg.optim.lr == 2e-3 and cfg.data.eval_batch_size == 4 * cfg.data.batch_size
    # the head at lr, every block of the body at lr / 10
    assert (cfg.model.head_init, cfg.model.body_lr_share, cfg.model.lr_decay) == ("zero", 0.1, 1.0)
    saved = (r.run_dir / "config.yaml").read_text()
    assert f"lr: {cfg.optim.lr}" in saved and "finetune: staged" in saved  # resume repeats it exactly
    body = [k for k in pre if k.startswith("features.")]
    assert not _changed({k: pre[k] for k in body}, body_after_epoch_1)  # epoch 1: body frozen, BN stats too
    final = load_model(r.run_dir)[0].state_dict()
    assert any(k.startswith("features.0.") for k in _changed({k: pre[k] for k in body}, final))  # then all train
    assert r.metrics["accuracy"] > 0.5


def test_recipe_fits_the_head_then_trains_everything_from_it(pretrained, tmp_path):
    from cnnlab.engine.trainer import Trainer

    seen = {}

    def head_at_start(trainer: Trainer, row):  # after epoch 1: every block moved, the head from its fit
        seen.update({k: v.clone() for k, v in trainer.model.state_dict().items()} if trainer.epoch == 1 else {})

    pre = load_model(pretrained)[0].state_dict()
    r, lines = _recipe(pretrained, tmp_path, "lpft", callbacks=[head_at_start], overrides={"model.head_init": "fit"})
    text = "\n".join(lines)
    assert "head fitted on the frozen features of" in text and "LR finder" not in text
    plan = "fine-tune recipe: the new head fitted on the frozen features (above), then 2 epoch(s) training all 4 blocks"
    assert f"{plan}, every layer at 1.00e-04" in text
    cfg = r.config
    assert (cfg.model.head_init, cfg.model.head_epochs, cfg.sched.restarts) == ("fit", 0, [])
    saved = (r.run_dir / "config.yaml").read_text()
    assert "head_init: fit" in saved and "head_epochs: 0" in saved  # resume repeats it exactly
    body = [k for k in pre if k.startswith("features.") and "num_batches" not in k]
    assert any(k.startswith("features.0.") for k in _changed({k: pre[k] for k in body}, seen))
    fitted = float(next(line for line in lines if line.startswith("head fitted")).split("accuracy ")[1].split(",")[0])
    assert fitted > 0.5  # digits on the MNIST sample's features: well above a tenth before any step
    assert r.metrics["accuracy"] > 0.5


def test_recipe_with_sgd_sweeps_the_lr_finder_on_the_frozen_network(pretrained, tmp_path):
    r, lines = _recipe(pretrained, tmp_path, "sgd", overrides={"optim.name": "sgd"})
    finder = next(line for line in lines if "from the LR finder" in line)
    steps, batch = re.search(r"\((\d+) steps of (\d+) images\)", finder).groups()
    assert 40 <= int(steps) <= 100 and int(batch) <= r.config.data.batch_size  # bounded: about one pass
    assert r.config.optim.name == "sgd" and 1e-6 <= r.config.optim.lr <= 0.05  # held at SGD's ceiling at most
    # the finder leaves no trace (gradients, loader, random states): the run is the run given its rate
    given, lines = _recipe(pretrained, tmp_path, "sgd_given", lr=r.config.optim.lr, overrides={"optim.name": "sgd"})
    assert not any("LR finder" in line for line in lines)
    rows = [list(csv.DictReader((run.run_dir / "history.csv").open())) for run in (r, given)]
    for row in rows[0] + rows[1]:
        del row["seconds"]  # wall-clock time, the one column that may differ
    assert rows[0] == rows[1] and len(rows[0]) == 2 and "train_loss" in rows[0][0]
    a, b = load_model(r.run_dir)[0].state_dict(), load_model(given.run_dir)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_recipe_takes_a_given_lr_without_the_finder(pretrained, tmp_path):
    r, lines = _recipe(pretrained, tmp_path, "given", lr=0.003)
    assert not any("LR finder" in line for line in lines)
    assert r.config.optim.lr == 0.003


@pytest.mark.slow
@pytest.mark.parametrize("head_init", ["zero", "fit"])
def test_recipe_resume_after_a_kill_is_bit_identical(pretrained, tmp_path, monkeypatch, head_init):
    from cnnlab.engine.trainer import Trainer

    full, _ = _recipe(pretrained, tmp_path, "full", overrides={"model.head_init": head_init})
    real = Trainer._save_step

    def save_then_die(self):
        real(self)
        if self.epoch == 1 and self.state.batches == 3:  # early in epoch 2, after unfreezing
            raise Killed

    monkeypatch.setattr(Trainer, "_save_step", save_then_die)
    with pytest.raises(Killed):
        _recipe(pretrained, tmp_path, "killed", overrides={"train.checkpoint_every": 1, "model.head_init": head_init})
    monkeypatch.setattr(Trainer, "_save_step", real)
    lines = []
    resumed = cnnlab.train(resume=tmp_path / "killed", log=lines.append)
    assert not any("LR finder" in line for line in lines)  # the saved rate is used, not found again
    a, b = load_model(full.run_dir)[0].state_dict(), load_model(resumed.run_dir)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_own_run_brings_its_image_size_and_statistics(pretrained, tmp_path):
    import json

    r, lines = _recipe(pretrained, tmp_path, "size", lr=0.003)  # no image_size given
    source = json.loads((pretrained / "model" / "model.json").read_text())
    data = json.loads((r.run_dir / "data.json").read_text())
    assert data["input_shape"] == source["input_shape"] == [1, 16, 16]
    assert data["mean"] == source["mean"] and data["std"] == source["std"]
    assert any("images 16x16" in line for line in lines)


def test_another_input_size_names_the_flag(pretrained, tmp_path):
    with pytest.raises(CnnlabError, match=r"(?s)shape mismatch.*classifier.*trained on 16x16 images.*--image-size"):
        _recipe(pretrained, tmp_path, "other-size", image_size=24, lr=0.003)


def test_staged_without_weights_is_refused(tmp_path):
    with pytest.raises(CnnlabError, match="--pretrained"):
        cnnlab.train(data="digits", finetune="staged", out=tmp_path, overrides=QUIET, **COMMON)


def test_cli_fine_tune_prints_the_recipe(pretrained, tmp_path, capsys):
    from cnnlab.cli.main import main

    code = main(
        ["train", "--data", "digits", "--pretrained", str(pretrained), "--epochs", "2", "--out", str(tmp_path),
         "--no-progress", "--set", "output.plots=false", "--set", "train.threads=1"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "adamw's rate for a new head, no LR finder" in out and "fine-tune recipe" in out
    assert "test accuracy" in out
    for shown in _own_images_transcript():  # docs/own-images.md shows these lines: the command prints them
        shown = re.sub(r" data\.augment flip \([^)]*\);", "", shown)  # photos get flips; these digits are grey
        words = [w for w in shown.split() if not any(ch.isdigit() for ch in w) and "..." not in w]
        pattern = re.compile(".*".join(re.escape(w) for w in words))
        assert any(pattern.search(line) for line in out.splitlines()), shown


def _own_images_transcript() -> list[str]:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "own-images.md").read_text()
    section = doc.split("## Start from pretrained weights: the fine-tune recipe")[1]
    block = section.split("```\n")[1]
    lines = [line for line in block.splitlines() if line.strip() not in ("", "...") and not line.startswith("$ ")]
    assert len(lines) >= 5
    return lines


def test_an_unknown_strategy_names_the_known_ones(tmp_path):
    with pytest.raises(CnnlabError, match=r"unknown model.finetune 'stagd'.*'staged'.*Known: auto, staged"):
        cnnlab.train(data="digits", finetune="stagd", out=tmp_path, overrides=QUIET, **COMMON)
