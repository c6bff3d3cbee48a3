"""The trainer's guards: divergence stops the run (last good checkpoint kept), one trainer per run
folder (a lock that dead processes do not hold), stale checkpoint temp files removed on resume,
``--epochs 0`` refused, ``1e-3``-style numbers accepted, ``train_seconds`` summed over resumes, and
a full disk or read-only output ending in one error line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from cnnlab.api import train
from cnnlab.cli.main import main
from cnnlab.config import Config, apply_overrides, load_config
from cnnlab.engine.checkpoint import atomic_save, load_checkpoint
from cnnlab.engine.trainer import DivergenceError, DivergenceGuard, RunLock
from cnnlab.errors import CnnlabError


def _quiet(s):
    return None


# ---- divergence -----------------------------------------------------------------------------------
def test_guard_trips_on_an_explosion_but_not_on_noise():
    guard = DivergenceGuard(100.0)
    for step, loss in enumerate([2.4, 2.0, 1.5, 3.0, 1.2, 0.9, 2.5, 0.8]):  # noisy but sane
        guard(step + 1, 0, step, loss)
    with pytest.raises(DivergenceError, match=r"epoch 1, step 10 \(optimiser step 10\)"):
        guard(9, 0, 8, 0.7)
        guard(10, 0, 9, 7e13)  # Adam at lr 1e6: 2.4 -> 7e13 in one step
    tiny = DivergenceGuard(100.0)
    for step in range(50):  # a well-fitted model: losses near zero, then an ordinary hard batch
        tiny(step, 0, step, 1e-5)
    tiny(51, 0, 51, 0.5)  # 0.5 is 50,000x the minimum, but under 100 x the 0.01 floor after smoothing
    DivergenceGuard(None)(1, 0, 0, 1e30)  # disabled: never trips


def test_lr_1e6_stops_with_the_step_named_and_saves_no_model(fast_overrides, capsys):
    root = fast_overrides["output.root"]
    argv = ["train", "--data", "digits", "--optimizer", "adam", "--lr", "1e6", "--epochs", "2", "--out", root]
    assert main([*argv, "--no-progress", "--output.plots", "false", "--train.threads", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnnlab: error: the training loss diverged at epoch 1, step 2 (optimiser step 2)"), err
    (run_dir,) = Path(root).iterdir()
    assert not (run_dir / "model").exists() and not (run_dir / "metrics.json").exists()
    assert not list((run_dir / "checkpoints").iterdir())  # nothing good to keep yet: nothing written


def test_divergence_keeps_the_last_good_checkpoint(fast_overrides):
    def blow_up(trainer, row):  # after epoch 1, an absurd learning rate
        for group in trainer.optimizer.param_groups:
            group["lr"] = 1e6

    with pytest.raises(DivergenceError, match=r"diverged at epoch 2, step \d+"):
        train(
            overrides={**fast_overrides, "optim.name": "adam", "sched.name": "none", "train.epochs": 3},
            callbacks=[blow_up],
            log=_quiet,
        )
    (run_dir,) = Path(fast_overrides["output.root"]).iterdir()
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert state["history"][0]["train_loss"] < 5  # the good epoch's state, not the exploded one


# ---- config -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("3e-4", 3e-4), ("1e6", 1e6), ("1E+2", 100.0), (".5", 0.5)])
def test_exponent_numbers_parse_wherever_a_float_is_expected(text, value, tmp_path):
    assert apply_overrides(Config(), {"optim.lr": text}).optim.lr == value
    assert apply_overrides(Config(), {"train.grad_clip": text}).train.grad_clip == value  # float | None
    path = tmp_path / "c.yaml"
    path.write_text(f"optim:\n  lr: {text}\n")  # YAML 1.1 reads 1e-3 as a string
    assert load_config(path).optim.lr == value
    with pytest.raises(CnnlabError, match="optim.lr"):
        apply_overrides(Config(), {"optim.lr": "fast"})


def test_zero_epochs_is_refused_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(CnnlabError, match="train.epochs must be at least 1"):
        load_config(overrides={"train.epochs": 0})
    assert main(["train", "--data", "digits", "--epochs", "0", "--out", str(tmp_path / "runs")]) == 1
    assert "train.epochs" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--train.ema", "2"], "train.ema must be in [0, 1)"),
        (["--train.label_smoothing", "1.5"], "train.label_smoothing must be in [0, 1]"),
        (["--data.batch_size", "0"], "data.batch_size must be at least 1"),
        (["--data.eval_batch_size", "-5"], "data.eval_batch_size must be at least 1"),
        (["--train.accumulate", "0"], "train.accumulate must be at least 1"),
        (["--train.grad_clip", "-1"], "train.grad_clip must be above 0"),
        (["--train.checkpoint_every", "-1"], "train.checkpoint_every must be 0"),
        (["--train.early_stop_metric", "val_f1"], "train.early_stop_metric must be one of val_acc, val_loss"),
        (["--sched.monitor", "loss"], "sched.monitor must be one of"),
        (["--train.grad_clip_mode", "l2"], "unknown gradient clipping mode 'l2'"),
        (["--train.amp", "bf17"], "train.amp must be one of none, bf16, fp16"),
        (["--train.tta", "mirror"], "unknown test-time augmentation 'mirror'"),
        # refused once the data shows it has no validation split, still before the run folder
        (["--data.val_fraction", "0", "--train.early_stop_metric", "val_macro_f1"], "needs a validation split"),
    ],
)
def test_values_training_cannot_use_are_refused_before_anything_is_written(tmp_path, capsys, flags, message):
    # Each of these used to surface later: a traceback from torch, a KeyError after the first epoch,
    # or an error at the first step or validation that left a run folder without a model behind.
    assert main(["train", "--data", "digits", *flags, "--out", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()


# ---- resume: stale temp files, the lock, train_seconds -------------------------------------------
def _extend(run_dir: Path, epochs: int) -> None:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["train"]["epochs"] = epochs
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_resume_removes_stale_temp_files_and_sums_train_seconds(fast_overrides):
    part = train(overrides={**fast_overrides, "train.epochs": 1}, log=_quiet)
    ckpt = part.run_dir / "checkpoints"
    stale = [ckpt / ".last.pt.k1ll3d.tmp", ckpt / ".best.pt.abc123.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    state = load_checkpoint(ckpt / "last.pt")
    assert 0 < state["train_seconds"] < 600
    state["train_seconds"] = 1000.0  # as if the first process had trained for 1000 s
    atomic_save(state, ckpt / "last.pt")
    _extend(part.run_dir, 2)
    lines: list[str] = []
    resumed = train(resume=part.run_dir, log=lines.append)
    assert not any(p.exists() for p in stale)
    assert any(".last.pt.k1ll3d.tmp" in ln for ln in lines)
    assert 1000 < resumed.metrics["train_seconds"] < 1000 + 600
    assert load_checkpoint(ckpt / "last.pt")["train_seconds"] > 1000


_HOLD = textwrap.dedent(
    """
    import sys, time
    from cnnlab.engine.trainer import RunLock
    lock = RunLock(sys.argv[1]); lock.acquire()
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_a_second_trainer_of_the_same_run_is_refused(fast_overrides):
    part = train(overrides={**fast_overrides, "train.epochs": 1}, log=_quiet)
    _extend(part.run_dir, 2)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(part.run_dir)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CnnlabError, match=rf"another process \(PID {holder.pid}"):
            train(resume=part.run_dir, log=_quiet)
    finally:
        holder.kill()
        holder.wait(10)
    assert (part.run_dir / ".lock").read_text().strip() == str(holder.pid)  # a dead owner's lock file stays...
    resumed = train(resume=part.run_dir, log=_quiet)  # ...and does not block
    assert resumed.history[-1]["epoch"] == 2


def test_lock_is_reentrant_in_one_process_and_exclusive_across(tmp_path):
    a = RunLock(tmp_path)
    a.acquire()
    RunLock(tmp_path).acquire()  # the same process: allowed (train, then resume, in one session)
    assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    a.release()
    (tmp_path / ".lock").write_text("999999999\n")  # a PID that cannot exist, no flock held
    b = RunLock(tmp_path)
    b.acquire()
    assert b.file is not None
    b.release()


# ---- full disk, read-only output ------------------------------------------------------------------
def test_full_disk_while_checkpointing_is_one_error_line(fast_overrides, monkeypatch, capsys):
    real = os.fdopen

    def full(fd, mode, *args, **kwargs):  # a checkpoint's temp file is created, then every write fails
        if "last.pt" not in os.readlink(f"/proc/self/fd/{fd}"):
            return real(fd, mode, *args, **kwargs)
        os.close(fd)
        return real(os.open("/dev/full", os.O_WRONLY), mode, *args, **kwargs)

    if not Path("/dev/full").exists() or not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /dev/full and /proc")
    monkeypatch.setattr(os, "fdopen", full)
    argv = ["train", "--data", "digits", "--epochs", "1", "--out", fast_overrides["output.root"], "--no-progress"]
    assert main([*argv, "--train.threads", "1", "--output.plots", "false"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cnnlab: error: no space left on the device while writing ")
    assert err[-1].endswith("last.pt; free some space or choose another --out folder")
    (run_dir,) = Path(fast_overrides["output.root"]).iterdir()
    assert not list((run_dir / "checkpoints").iterdir())  # no temp file left behind


def test_read_only_output_is_one_error_line(tmp_path, capsys):
    target = Path("/sys/cnnlab-read-only-test")
    if not Path("/sys").is_dir() or os.access("/sys", os.W_OK) and _can_mkdir(target):
        pytest.skip("needs a read-only /sys")
    assert main(["train", "--data", "digits", "--epochs", "1", "--out", str(target), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cnnlab: error: cannot access {target}")
    assert "choose a writable --out folder" in err[0]


def _can_mkdir(path: Path) -> bool:
    try:
        path.mkdir()
    except OSError:
        return False
    path.rmdir()
    return True


_HEADER = textwrap.dedent(
    """
    import hashlib, torch
    from cnnlab.runs.model_file import safetensors_bytes
    state = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4, dtype=torch.int64)}
    meta = {k: str(i) for i, k in enumerate("zyxwvutsrq")}  # a hash map's order would differ between processes
    print(hashlib.sha256(safetensors_bytes(state, meta)).hexdigest())
    """
)


def test_model_file_writes_are_atomic_and_deterministic(tmp_path, monkeypatch):
    """Same weights -> same bytes in another process; a failed write keeps the previous files whole."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", _HEADER], stdout=subprocess.PIPE, env=env) for _ in range(2)]
    digests = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs) and len(digests[0]) == 65 and digests[0] == digests[1]
    from safetensors import safe_open

    import cnnlab.runs.model_file as mf

    model = torch.nn.Linear(2, 2)
    meta = {"architecture": "x", "kwargs": {}, "classes": ["a", "b"], "input_shape": [1, 2, 2], "mean": [0], "std": [1]}
    mf.save_model_file(tmp_path / "m", model, meta)
    with safe_open(str(tmp_path / "m" / "weights.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "cnnlab", "version": "1"} and sorted(f.keys()) == ["bias", "weight"]
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError) as info:
        mf.save_model_file(tmp_path / "m", torch.nn.Linear(2, 2), meta)
    assert info.value.filename == str(tmp_path / "m" / "weights.safetensors")
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before  # untouched, no temp files
