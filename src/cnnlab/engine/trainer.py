"""The Trainer: wires ``train_one_epoch`` and ``evaluate`` to early stopping, checkpoints and history.

Per epoch: train, validate, step the schedule, record a history row, save ``last.pt`` (and
``best.pt`` when the monitored metric improved), print one line, stop early when the metric has
not improved by ``min_delta`` for ``patience`` epochs. A checkpoint holds everything needed to
continue the run exactly: model, optimiser, schedule, epoch, early-stopping state, history and all
random states (global torch RNG for dropout, the data generator for shuffling and augmentation).
No checkpoint is written from non-finite weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.engine.checkpoint import all_finite, atomic_save, load_checkpoint, rng_state, set_rng_state
from cnnlab.engine.loop import NonFiniteLossError, evaluate, train_one_epoch
from cnnlab.errors import CnnlabError
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
    history: list[dict] = field(default_factory=list)
    epoch: int = 0  # epochs completed

    def __post_init__(self):
        metric = self.cfg.early_stop_metric
        if self.val_loader is None:  # no validation split: watch the training metric instead
            metric = metric.replace("val_", "train_")
        self.early = EarlyStopping(metric, self.cfg.early_stop_patience, self.cfg.early_stop_min_delta)
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)

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
        try:
            row = train_one_epoch(
                self.model,
                self.train_loader,
                self.optimizer,
                self.loss_fn,
                schedule=self.schedule,
                grad_clip=self.cfg.grad_clip,
                epoch=self.epoch,
                progress=bar,
            )
        except NonFiniteLossError:
            if bar is not None:
                bar.close()
            raise
        if bar is not None:
            bar.close()
        if self.val_loader is not None:
            row.update(evaluate(self.model, self.val_loader, "val"))
        row = {"epoch": self.epoch + 1, **row, "seconds": time.perf_counter() - start}
        self.schedule.step_epoch(row if self.val_loader is not None else _train_as_val(row))
        self.epoch += 1
        self.history.append(row)
        improved = self.early.update(row[self.early.metric], self.epoch)
        self._save(improved)
        write_history_csv(self.run_dir / "history.csv", self.history)
        self.log(_epoch_line(row, self.cfg.epochs, improved))
        for cb in self.callbacks:
            cb(self, row)
        return row

    # ---- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "epoch": self.epoch,
            "early": {
                "best": self.early.best,
                "best_epoch": self.early.best_epoch,
                "bad_epochs": self.early.bad_epochs,
            },
            "history": self.history,
            "rng": rng_state({"data": self.generator}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.epoch = int(state["epoch"])
        e = state["early"]
        self.early.best, self.early.best_epoch, self.early.bad_epochs = e["best"], e["best_epoch"], e["bad_epochs"]
        self.history = list(state["history"])
        set_rng_state(state["rng"], {"data": self.generator})

    def _save(self, improved: bool) -> None:
        if not all_finite(self.model):
            raise NonFiniteLossError(
                f"the weights contain NaN or Inf after epoch {self.epoch}; no checkpoint was written and the "
                "previous ones are intact. Lower the learning rate or enable gradient clipping."
            )
        state = self.state_dict()
        ckpt = self.run_dir / "checkpoints"
        atomic_save(state, ckpt / "last.pt")
        if improved:
            atomic_save(state, ckpt / "best.pt")

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint written by this Trainer (``last.pt``)."""
        state = load_checkpoint(path)
        try:
            self.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CnnlabError(f"checkpoint {path} does not match this run's model or settings: {exc}") from None


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
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5)
