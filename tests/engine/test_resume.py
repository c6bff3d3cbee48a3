"""Mid-epoch resume, steps.csv, and the training options end to end through ``train`` (digits, seconds)."""

import pytest
import torch

from cnnlab.api import train
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.engine.trainer import Trainer


class Killed(Exception):
    pass


@pytest.fixture
def quiet(fast_overrides):
    return {**fast_overrides, "output.plots": False, "train.early_stop_patience": None}


def test_mid_epoch_resume_is_bit_identical(quiet, monkeypatch):
    # Everything that draws random numbers or carries state is on: augmentation, MixUp, dropout-free
    # model with EMA, a per-step schedule with warm-up, and Lookahead.
    ov = {
        **quiet,
        "data.augment": "crop(pad=1)+noise(std=0.02)",
        "data.mixup": 0.2,
        "train.ema": 0.9,
        "sched.name": "cosine",
        "sched.warmup_epochs": 0.5,
        "optim.lookahead_k": 3,
        "train.checkpoint_every": 5,
    }
    full = train(overrides=ov, log=lambda s: None)
    real = Trainer._save_step

    def save_then_die(self):
        real(self)
        if self.state.global_step == 35:  # in epoch 2 (about 21 steps per epoch)
            raise Killed

    monkeypatch.setattr(Trainer, "_save_step", save_then_die)
    with pytest.raises(Killed):
        train(overrides={**ov, "output.name": "killed"}, log=lambda s: None)
    monkeypatch.setattr(Trainer, "_save_step", real)
    run = full.run_dir.parent / "killed"
    per_epoch = sum(1 for line in (full.run_dir / "steps.csv").read_text().splitlines() if line.split(",")[1] == "1")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["loop"]["batches"] == 35 - per_epoch  # mid-epoch 2
    resumed = train(resume=run, log=lambda s: None)
    a = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["ema"]:
        assert torch.equal(a["ema"][k], b["ema"][k]), k
    assert [r["train_loss"] for r in full.history] == [r["train_loss"] for r in resumed.history]
    assert (full.run_dir / "steps.csv").read_text() == (run / "steps.csv").read_text()


def test_steps_csv_logs_every_step_lr(quiet):
    r = train(overrides={**quiet, "sched.name": "onecycle", "train.accumulate": 2}, log=lambda s: None)
    rows = [line.split(",") for line in (r.run_dir / "steps.csv").read_text().splitlines()]
    assert rows[0] == ["step", "epoch", "lr", "loss"]
    per_epoch = -(-_train_size(r) // 64)
    assert len(rows) - 1 == 2 * per_epoch  # one row per batch
    lrs = [float(row[2]) for row in rows[1:]]
    assert lrs[0] < max(lrs) and lrs[-1] < max(lrs)  # the one-cycle rise and fall
    assert int(rows[-1][0]) == 2 * -(-per_epoch // 2)  # optimiser steps: half the batches, rounded up


@pytest.mark.parametrize(
    "extra",
    [
        {"train.loss": "focal", "data.balance": "weights", "train.grad_clip_mode": "value", "train.l2": 1e-4},
        {"data.balance": "sampler", "data.cutmix": 1.0, "train.amp": "bf16", "train.tta": "flip-translate"},
        {"optim.name": "lamb", "optim.lr": 0.01, "train.init": "he_normal", "train.l1": 1e-5},
    ],
)
def test_options_train_end_to_end(quiet, extra):
    r = train(overrides={**quiet, **extra}, log=lambda s: None)
    assert r.metrics["accuracy"] > 0.3, extra  # far above chance (0.1) after 2 epochs


def _train_size(result) -> int:
    lines = (result.run_dir / "split.csv").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.startswith("train,"))


def test_cpu_speed_recipe_resumes_bit_identical_after_a_kill(quiet, monkeypatch):
    # configs/cifar10_fast.yaml as it is (Muon, linear decay per step, bf16 autocast, channels_last,
    # reflect-padded crop+flip, label smoothing, the whitening stem fitted on a fresh run only) on
    # digits at 16x16 with a narrow airbench, killed mid-epoch 2 and resumed.
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[2] / "configs" / "cifar10_fast.yaml"
    ov = {**quiet, "data.image_size": 16, "data.batch_size": 64, "data.eval_batch_size": 256}
    ov.update({"model.kwargs": {"widths": [8, 8, 8], "stem_width": 8}, "train.checkpoint_every": 5})
    full = train(recipe, overrides=ov, log=lambda s: None)
    assert full.config.optim.name == "muon" and full.config.train.amp == "bf16"
    real = Trainer._save_step

    def save_then_die(self):
        real(self)
        if self.state.global_step == 35:  # in epoch 2 (23 steps per epoch)
            raise Killed

    monkeypatch.setattr(Trainer, "_save_step", save_then_die)
    with pytest.raises(Killed):
        train(recipe, overrides={**ov, "output.name": "killed"}, log=lambda s: None)
    monkeypatch.setattr(Trainer, "_save_step", real)
    killed = full.run_dir.parent / "killed"
    assert load_checkpoint(killed / "checkpoints" / "last.pt")["loop"]["batches"] > 0  # stopped mid-epoch
    resumed = train(resume=killed, log=lambda s: None)
    a = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics["accuracy"] == full.metrics["accuracy"]


def _snapshot(folder) -> dict:
    """Every file of a folder: its bytes and modification time."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resuming_a_finished_run_says_so_and_changes_nothing(quiet, capsys):
    from cnnlab.cli.main import main

    done = train(overrides={**quiet, "train.epochs": 1}, log=lambda s: None)
    before = _snapshot(done.run_dir)
    code = main(["train", "--resume", str(done.run_dir), "--no-progress"])  # an output-only flag is allowed
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"{done.run_dir} is finished (1 epoch trained" in out and "nothing was changed" in out
    assert _snapshot(done.run_dir) == before  # train_seconds, report, plots: all untouched
    lines = []
    again = train(resume=done.run_dir, log=lines.append)  # the Python API says the same
    assert again.metrics == done.metrics and len(again.history) == 1 and "is finished" in lines[0]
    assert _snapshot(done.run_dir) == before


def test_resume_takes_runtime_options_and_refuses_the_others(quiet, capsys):
    from cnnlab.cli.main import main
    from cnnlab.errors import CnnlabError

    run = train(overrides={**quiet, "train.epochs": 1}, log=lambda s: None).run_dir
    (run / "metrics.json").unlink()  # as if killed after the last checkpoint, before the model file
    for p in sorted((run / "model").iterdir()):
        p.unlink()
    (run / "model").rmdir()
    code = main(["train", "--resume", str(run), "--no-progress", "--set", "train.threads=1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "it/s" not in err and (run / "model" / "model.json").is_file()  # finished, with no progress bar
    code = main(["train", "--resume", str(run), "--epochs", "3"])
    _, err = capsys.readouterr()
    assert code == 1 and "drop the other options (train.epochs)" in err and "--no-progress" in err
    with pytest.raises(CnnlabError, match=r"drop the other options \(optim.lr\)"):
        train(resume=run, lr=0.1)  # the Python API refuses what it used to ignore


def test_an_early_stopped_run_is_finished_but_a_shorter_one_continues(quiet):
    from cnnlab.api import is_finished
    from cnnlab.config import load_config

    stopped = train(overrides={**quiet, "train.epochs": 30, "train.early_stop_patience": 1}, log=lambda s: None)
    cfg = load_config(stopped.run_dir / "config.yaml")
    assert len(stopped.history) < 30 and is_finished(stopped.run_dir, cfg)  # early stopping ended it
    cfg.train.early_stop_patience = None  # the same history without early stopping: 30 epochs were asked for
    assert not is_finished(stopped.run_dir, cfg)
