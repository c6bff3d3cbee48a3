"""The Trainer: wires ``train_one_epoch`` and ``evaluate`` to early stopping, checkpoints and history.

Per epoch: train, validate (with the EMA weights when EMA is on, and test-time augmentation when
asked), step the schedule, record a history row, save ``last.pt`` (and ``best.pt`` when the
monitored metric improved), print one line, stop early when the metric has not improved by
``min_delta`` for ``patience`` epochs. With ``checkpoint_every`` N, ``last.pt`` is also written
every N optimiser steps, and a resumed run skips the batches already consumed (the loader replays
the epoch's permutation from its seed). A checkpoint holds everything needed to continue the run
exactly: model, optimiser, schedule, grad scaler, EMA weights, epoch and step, the epoch's running
sums, the loader position, early-stopping state, history and all random states (global torch RNG
for dropout, the data generator for shuffling and augmentation). No checkpoint is written from
non-finite weights. The LR and loss of every step go to ``steps.csv``.

Guards: a loss that grows past ``divergence_factor`` times its lowest smoothed value stops the run
(:class:`DivergenceGuard`) before the step is applied, so the checkpoints keep the last good state;
a lock file (``.lock``, held with ``flock`` by the main process) refuses a second trainer or resume
of the same run folder, and a lock left by a dead process is simply taken over; a resume removes
the temporary files of checkpoint writes that a kill interrupted. ``train_seconds`` in the
checkpoint is the running total over every process that trained the run.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.engine.checkpoint import (
    all_finite,
    atomic_save,
    load_checkpoint,
    remove_stale_temps,
    rng_state,
    set_rng_state,
)
from cnnlab.engine.distributed import DistInfo, mean_over_ranks
from cnnlab.engine.loop import EpochParts, EpochState, NonFiniteLossError, StepOptions, evaluate, train_one_epoch
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic
from cnnlab.runs import write_history_csv


@dataclass
class EarlyStopping:
    """Tracks the best value of ``metric``; ``bad_epochs`` counts epochs without improvement."""

    metric: str
    patience: int | None
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0

    @property
    def mode(self) -> str:
        return "min" if self.metric.endswith("loss") else "max"

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value``; return True when it is a new best."""
        better = self.best is None or (
            value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        )
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience


def ended_on_its_own(history: list[dict], cfg: TrainConfig) -> bool:
    """Whether the epochs in ``history`` ended by themselves: a non-finite training loss, or early
    stopping replayed over the recorded metric (so a resume can tell a stopped run from a short one)."""
    if not math.isfinite(history[-1]["train_loss"]):
        return True
    metric = cfg.early_stop_metric
    if metric not in history[0]:  # trained without a validation split: the training metric was watched
        metric = metric.replace("val_", "train_")
    early = EarlyStopping(metric, cfg.early_stop_patience, cfg.early_stop_min_delta)
    for row in history:
        early.update(row[metric], int(row["epoch"]))
    return early.should_stop


class DivergenceError(NonFiniteLossError):
    """The loss exploded (finite, but far above its best); training stops before anything is saved."""


@dataclass
class DivergenceGuard:
    """Stop when the smoothed training loss exceeds ``factor`` times its lowest value so far.

    The loss of each step is smoothed by a bias-corrected exponential average (``beta`` 0.9, about
    ten steps) so one hard batch does not trip it; its running minimum counts as at least ``floor``,
    so the tiny losses of a well-fitted model do not make ordinary noise look like divergence.
    """

    factor: float | None
    beta: float = 0.9
    floor: float = 0.01
    avg: float = 0.0
    steps: int = 0
    best: float = math.inf

    def __call__(self, global_step: int, epoch: int, step: int, loss: float) -> None:
        if self.factor is None:
            return
        self.steps += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        smooth = self.avg / (1 - self.beta**self.steps)
        limit = self.factor * max(self.best, self.floor)
        if smooth > limit:
            raise DivergenceError(
                f"the training loss diverged at epoch {epoch + 1}, step {step + 1} (optimiser step {global_step}): "
                f"smoothed loss {smooth:.4g} is over {self.factor:g} x its lowest value {self.best:.4g}. Lower "
                "--optim.lr, keep --train.grad_clip, or raise --train.divergence_factor (null disables the check). "
                "Nothing was saved from this step; the earlier checkpoints are the last good state."
            )
        self.best = min(self.best, smooth)

    def state_dict(self) -> dict:
        return {"avg": self.avg, "steps": self.steps, "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.avg, self.steps, self.best = float(state["avg"]), int(state["steps"]), float(state["best"])


class RunLock:
    """``run_dir/.lock``: one trainer per run folder at a time.

    The file holds the owner's PID and an exclusive ``flock``; the kernel drops the lock when the
    process dies, so a lock left by a killed run never blocks. The same process may take its own
    lock again (train, then resume, in one Python session). Where ``flock`` is missing (Windows) or
    unsupported by the file system, no lock is taken. ``activity`` says in the refusal what the
    holder is doing ("trained"; a cross-validation's parent folder: "cross-validated").
    """

    def __init__(self, run_dir: Path, activity: str = "trained"):
        self.path = Path(run_dir) / ".lock"
        self.activity = activity
        self.file = None  # the open lock file while held; closing it (or garbage collection) releases the lock

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:
            return
        f = open(self.path, "a+")  # noqa: SIM115 - held open for the trainer's lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_pid(f)
            f.close()
            if owner == os.getpid():
                return  # an earlier Trainer of this process holds it
            raise CnnlabError(
                f"{self.path.parent} is being {self.activity} by another process (PID {owner}, lock file {self.path}); "
                "wait for it to finish or stop it before resuming"
            ) from None
        except OSError:  # a file system without flock: train unlocked
            f.close()
            return
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self.file = f

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # drops the flock; the file stays (an unlocked file means nothing)
            self.file = None


def _read_pid(f) -> int | None:
    try:
        f.seek(0)
        return int(f.read(32).strip() or 0) or None
    except (OSError, ValueError):
        return None


@dataclass
class Trainer:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: object
    loss_fn: Callable
    train_loader: object
    val_loader: object | None
    cfg: TrainConfig
    run_dir: Path
    generator: torch.Generator
    log: Callable[[str], None] = print
    progress: bool = True  # show a progress bar per epoch
    # Called as cb(trainer, row) after each epoch's row is recorded and checkpoints are saved
    # (TensorBoard logging, Optuna pruning, ...). An exception raised by a callback ends training.
    callbacks: list[Callable[[Trainer, dict], None]] = field(default_factory=list)
    mixer: Callable | None = None  # batch-level MixUp/CutMix: (x, y) -> (x, y_b, lam)
    dist: DistInfo = field(default_factory=DistInfo)  # data-parallel rank/world (rank 0 writes)
    forward_module: nn.Module | None = None  # what training calls (DDP around model); default: model
    history: list[dict] = field(default_factory=list)
    epoch: int = 0  # epochs completed

    def __post_init__(self):
        metric = self.cfg.early_stop_metric
        if self.val_loader is None:  # no validation split: watch the training metric instead
            metric = metric.replace("val_", "train_")
        self.early = EarlyStopping(metric, self.cfg.early_stop_patience, self.cfg.early_stop_min_delta)
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        device = next(self.model.parameters()).device
        c = self.cfg
        self.opts = StepOptions.from_config(c, device)
        self.guard = DivergenceGuard(c.divergence_factor)
        self.opts.on_loss = self.guard
        self.lock = RunLock(self.run_dir)
        if self.dist.main:
            self.lock.acquire()
        self.seconds_before = 0.0  # train_seconds of the processes that trained this run before (resume)
        self._started = time.perf_counter()
        self.scaler = torch.amp.GradScaler(device.type) if c.amp == "fp16" else None
        self.ema = _make_ema(self.model, c.ema) if c.ema else None
        module = self.forward_module if self.forward_module is not None else self.model
        self.forward = torch.compile(module) if c.compile else module
        if not self.dist.main:  # other ranks train and validate silently
            self.log, self.progress = (lambda s: None), False
        self.state = EpochState()
        self._steps_csv = self.run_dir / "steps.csv"

    @property
    def eval_model(self) -> nn.Module:
        """The weights evaluation uses: the EMA average when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    def fit(self) -> list[dict]:
        """Train until ``cfg.epochs`` or early stopping; returns the history rows."""
        while self.epoch < self.cfg.epochs:
            row = self._run_epoch()
            if self.early.should_stop:
                self.log(
                    f"early stopping: {self.early.metric} has not improved for {self.early.patience} epochs "
                    f"(best {self.early.best:.4f} at epoch {self.early.best_epoch})"
                )
                break
            if not math.isfinite(row["train_loss"]):
                break
        return self.history

    def _run_epoch(self) -> dict:
        start = time.perf_counter()
        bar = _progress(len(self.train_loader), f"epoch {self.epoch + 1}/{self.cfg.epochs}", self.progress)
        if self.state.batches == 0:
            self.state.start_epoch()
        set_epoch = getattr(self.train_loader, "set_epoch", None)
        if set_epoch is not None:  # augmentations that change with the epoch (alternating flips)
            set_epoch(self.epoch)
        elif bar is not None:
            bar.update(self.state.batches)
        every = self.cfg.checkpoint_every
        try:
            parts = EpochParts(
                schedule=self.schedule,
                scaler=self.scaler,
                ema=self.ema,
                mixer=self.mixer,
                forward=self.forward,
                progress=bar,
                on_step=(lambda st: st.global_step % every == 0 and self._save_step()) if every else None,
            )
            row = train_one_epoch(
                self.model,
                self.train_loader,
                self.optimizer,
                self.loss_fn,
                self.opts,
                parts,
                epoch=self.epoch,
                state=self.state,
            )
        finally:
            if bar is not None:
                bar.close()
            for msg in self.state.messages:
                self.log(msg)
            self.state.messages.clear()
        self.state.batches = 0  # epoch complete: the next one starts from its first batch
        row = mean_over_ranks(row, ("train_loss", "train_acc"), self.dist)
        if self.val_loader is not None:
            row.update(evaluate(self.eval_model, self.val_loader, "val", tta=self.cfg.tta, amp=self.cfg.amp))
        row = {"epoch": self.epoch + 1, **row, "seconds": time.perf_counter() - start}
        self.schedule.step_epoch(row if self.val_loader is not None else _train_as_val(row))
        self.epoch += 1
        self.history.append(row)
        improved = self.early.update(row[self.early.metric], self.epoch)
        self._save(improved)
        if self.dist.main:
            write_history_csv(self.run_dir / "history.csv", self.history)
        self.log(_epoch_line(row, self.cfg.epochs, improved))
        for cb in self.callbacks if self.dist.main else []:
            cb(self, row)
        return row

    # ---- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        st = self.state
        loader_state = getattr(self.train_loader, "state_dict", None)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "loop": {k: getattr(st, k) for k in ("batches", "loss_sum", "correct", "seen", "global_step", "skipped")},
            "loader": loader_state() if loader_state is not None and st.batches else {},
            "epoch": self.epoch,
            "early": {
                "best": self.early.best,
                "best_epoch": self.early.best_epoch,
                "bad_epochs": self.early.bad_epochs,
            },
            "history": self.history,
            "rng": self._rng_state(),
            "divergence": self.guard.state_dict(),
            "train_seconds": self.train_seconds(),
        }

    def train_seconds(self) -> float:
        """Seconds spent training this run, summed over every process that worked on it."""
        return self.seconds_before + time.perf_counter() - self._started

    def _generators(self) -> dict[str, torch.Generator]:
        gens = {"data": self.generator}
        if self.mixer is not None:
            gens["mix"] = self.mixer.generator
        return gens

    def _rng_state(self) -> dict:
        state = rng_state(self._generators())
        consumed = getattr(self.train_loader, "consumed_generator_state", None)
        if consumed is not None:  # a prefetching loader's producer may have drawn ahead of training
            state["gen.data"] = consumed()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        for k, v in state.get("loop", {}).items():
            setattr(self.state, k, v)
        if state.get("loader"):
            self.train_loader.load_state_dict(state["loader"])
        self.epoch = int(state["epoch"])
        e = state["early"]
        self.early.best, self.early.best_epoch, self.early.bad_epochs = e["best"], e["best_epoch"], e["bad_epochs"]
        self.history = list(state["history"])
        set_rng_state(state["rng"], self._generators())
        if state.get("divergence"):
            self.guard.load_state_dict(state["divergence"])
        self.seconds_before = float(state.get("train_seconds", 0.0))
        self._started = time.perf_counter()

    def _check_finite(self, where: str) -> None:
        if not all_finite(self.model) or (self.ema is not None and not all_finite(self.ema.module)):
            raise NonFiniteLossError(
                f"the weights contain NaN or Inf {where}; no checkpoint was written and the "
                "previous ones are intact. Lower the learning rate or enable gradient clipping."
            )

    def _save(self, improved: bool) -> None:
        self._check_finite(f"after epoch {self.epoch}")
        self._write_steps()
        if not self.dist.main:
            return
        state = self.state_dict()
        ckpt = self.run_dir / "checkpoints"
        atomic_save(state, ckpt / "last.pt")
        if improved:  # the same state: a second name for last.pt's bytes (a copy without hard links)
            atomic.link_or_copy(ckpt / "last.pt", ckpt / "best.pt")

    def _save_step(self) -> None:
        """Mid-epoch ``last.pt`` (every ``checkpoint_every`` optimiser steps); ``best.pt`` stays per epoch."""
        self._check_finite(f"at step {self.state.global_step}")
        self._write_steps()
        if self.dist.main:
            atomic_save(self.state_dict(), self.run_dir / "checkpoints" / "last.pt")

    def _write_steps(self) -> None:
        rows, self.state.step_log = self.state.step_log, []
        if not self.cfg.log_steps or not rows or not self.dist.main:
            return
        new = not self._steps_csv.exists()
        with open(self._steps_csv, "a") as f:
            if new:
                f.write("step,epoch,lr,loss\n")
            f.writelines(f"{s},{e},{lr:.6g},{loss:.6g}\n" for s, e, lr, loss in rows)

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint written by this Trainer (``last.pt``); temporary files of checkpoint
        writes that a kill interrupted are removed first."""
        if self.dist.main:
            for stale in remove_stale_temps(Path(path).parent):
                self.log(f"removed {stale.name}, left by an interrupted checkpoint write")
        state = load_checkpoint(path)
        try:
            self.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CnnlabError(f"checkpoint {path} does not match this run's model or settings: {exc}") from None
        if self.dist.main:
            _truncate_steps(self._steps_csv, self.state.global_step)


def _truncate_steps(path: Path, last_step: int) -> None:
    # Rows written after the checkpoint (a run killed between the two writes) would be repeated.
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = [lines[0]] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= last_step]
    atomic.write_text(path, "".join(keep))


def _make_ema(model: nn.Module, decay: float):
    """Exponential moving average of parameters and buffers (BatchNorm statistics included)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _train_as_val(row: dict) -> dict:
    # Plateau schedules watch val_loss; without a validation split, use the training loss.
    return {**row, **{k.replace("train_", "val_"): v for k, v in row.items() if k.startswith("train_")}}


def _epoch_line(row: dict, epochs: int, improved: bool) -> str:
    parts = [
        f"epoch {row['epoch']:>3}/{epochs}",
        f"train_loss {row['train_loss']:.4f}",
        f"train_acc {row['train_acc']:.4f}",
    ]
    if "val_loss" in row:
        parts += [f"val_loss {row['val_loss']:.4f}", f"val_acc {row['val_acc']:.4f}"]
    parts += [f"lr {row['lr']:.2e}", f"{row['seconds']:.1f}s"]
    return "  ".join(parts) + ("  *" if improved else "")


def _progress(total: int, desc: str, enabled: bool):
    """A per-epoch bar on a terminal only: piped or redirected output gets the epoch lines alone."""
    if not enabled or not (sys.stdout.isatty() and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5)
