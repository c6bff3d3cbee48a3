"""The training workflow as named steps, shared by ``train``, ``lr-find``, distillation and tuning.

``cnnlab.api.train`` reads as the list of steps::

    session = start_session(cfg, log)          # device, DDP rank, threads, seeds
    ds, data = load_data(session)              # dataset -> split -> statistics -> loaders
    parts = build_parts(session, data)         # model + fine-tuning, optimiser, schedule, loss
    run_dir = new_run_folder(session, ds, data)
    trainer = make_trainer(session, parts, data, run_dir)
    trainer.fit()
    finish(session, trainer, data, run_dir)    # best weights -> model file, test predictions, metrics, plots

``lr-find`` stops after ``build_parts`` (so ``--pretrained``, ``--balance`` and every other flag
mean the same there), distillation trains its student through the same ``Trainer`` step, and a
tuning trial is an ordinary ``train``.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.config import Config, check_names, save_config, to_dict
from cnnlab.data.augment import build_augment, build_mixer
from cnnlab.data.datasets import ArrayDataset, FolderDataset, load_dataset, write_folder_manifest
from cnnlab.data.pipeline import PreparedData, prepare_data
from cnnlab.data.splits import write_split_csv
from cnnlab.data.tta import TTA
from cnnlab.devices import resolve_device, spare_core
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.engine.distributed import DistInfo, broadcast, init_distributed, wrap_model
from cnnlab.engine.init import INITS, init_weights
from cnnlab.engine.loop import CLIPPERS, amp_warning, predict
from cnnlab.engine.losses import LOSSES, balance_summary, build_loss, class_weights
from cnnlab.engine.optim import OPTIMIZERS, build_optimizer, describe_group_lrs
from cnnlab.engine.schedulers import SCHEDULERS, build_schedule
from cnnlab.engine.trainer import Trainer
from cnnlab.errors import CnnlabError
from cnnlab.evaluation.metrics import classification_metrics, softmax
from cnnlab.finetune.fold import fold_batchnorm
from cnnlab.finetune.recipe import (
    STAGED,
    describe_recipe,
    find_head_lr,
    keep_bn_statistics,
    prepare_head,
    prepare_model,
    resolve_recipe,
    resolve_weights,
    strategy_of,
    with_lr_decay,
)
from cnnlab.finetune.transfer import parse_schedule
from cnnlab.models import check_model_args, create_model
from cnnlab.runs import create_run_dir, default_run_name, env_info, write_json
from cnnlab.runs.folder import check_folder_name
from cnnlab.runs.model_file import save_model_file
from cnnlab.runs.predictions import write_predictions


@dataclass
class Session:
    """Where and how this process trains."""

    cfg: Config
    device: torch.device
    dist: DistInfo
    log: Callable[[str], None] = print
    started: float = field(default_factory=time.perf_counter)
    weights: Any = None  # published pretrained weights (models.pretrained.PretrainedWeights), set by load_data


@dataclass
class Parts:
    """Everything ``Trainer`` needs beyond the data: built by :func:`build_parts`."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any
    loss_fn: torch.nn.Module
    callbacks: list = field(default_factory=list)  # fine-tuning callbacks (progressive unfreezing)


def freeze_objects_at_exit() -> None:
    """Register (once per process) ``gc.freeze`` to run at interpreter exit.

    Python's shutdown runs a last garbage collection that walks every object still alive; after a
    training run that is every object torch and TorchDynamo (imported by ``torch.optim``) created, and
    the walk took 0.6-0.7 s of a 1.0 s exit on the 2-core Xeon (docs/benchmarks.md, MNIST in one
    epoch). Frozen objects are skipped by it and still freed by reference counting, and the atexit
    handlers registered after this one (torch's) run before it. Only the end of the process changes:
    a notebook that trains again keeps its collector as it was."""
    global _FREEZE_REGISTERED
    if not _FREEZE_REGISTERED:
        atexit.register(gc.freeze)
        _FREEZE_REGISTERED = True


_FREEZE_REGISTERED = False


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


# ---- step 0: the config's names -------------------------------------------------------------------
def _auto_or(registry) -> Callable[[Config, str], Any]:
    return lambda cfg, name: None if name == "auto" else registry.get(name)


# How each kind of name a config field declares (``config.setting(..., names=KIND)``) is looked up; the
# registries live in the packages below this module, so the table is here and ``config`` stays a leaf.
NAME_LOOKUPS: dict[str, Callable[[Config, str], Any]] = {
    "augmentation": lambda cfg, name: build_augment(name, cfg.data.channels or 3),
    "model": lambda cfg, name: check_model_args(name, cfg.model.kwargs, cfg.data.channels, cfg.data.image_size),
    "fine-tuning strategy": lambda cfg, name: strategy_of(cfg.model),
    "unfreeze schedule": lambda cfg, text: parse_schedule(text) if strategy_of(cfg.model) == "progressive" else None,
    "optimizer": _auto_or(OPTIMIZERS),
    "scheduler": _auto_or(SCHEDULERS),
    "gradient clipping mode": lambda cfg, name: CLIPPERS.get(name),
    "loss": lambda cfg, name: LOSSES.get(name),
    "weight initialisation": lambda cfg, name: INITS.get(name),
    "test-time augmentation": lambda cfg, name: TTA.get(name),
}


def check_config(cfg: Config) -> Config:
    """Every name the config holds looked up in its registry, and ``model.kwargs`` tried on the model's
    builder, so that an unknown one fails before any data is read or folder written (the values' types
    and ranges were checked when the Config was made)."""
    check_names(cfg, NAME_LOOKUPS)
    if cfg.output.name is not None:
        check_folder_name(cfg.output.name)  # --name ../../x would write outside --out
    return cfg


# ---- step 1: the session ---------------------------------------------------------------------------
def start_session(cfg: Config, log: Callable[[str], None] = print) -> Session:
    """Check the config's names and model arguments (:func:`check_config`) before any data is read;
    pick the device, join the process group under torchrun, set threads and seeds."""
    check_config(cfg)
    device = resolve_device(cfg.train.device)
    dist, device = init_distributed(device)
    if not dist.main:
        log = _silent  # rank 0 speaks for every rank
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if note := amp_warning(device, cfg.train.amp):
        log(note)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    freeze_objects_at_exit()
    return Session(cfg, device, dist, log)


# ---- step 2: data ----------------------------------------------------------------------------------
def load_data(s: Session) -> tuple[Any, PreparedData]:
    """Dataset -> split -> statistics of the training split -> loaders (sharded under DDP).

    Published pretrained weights are fetched first: they bring their image size (unless one is
    given) and the mean/std they were trained with, which replace the data's own statistics."""
    s.cfg, s.weights = resolve_weights(s.cfg, s.log)
    d = s.cfg.data
    ds = load_dataset(
        d.name,
        root=d.root,
        download=d.download,
        image_size=d.image_size,
        channels=d.channels,
        on_bad_image=d.on_bad_image,
        max_bad_fraction=d.max_bad_fraction,
        manifest=d.split_manifest,
        on_leak=d.on_leak,
        on_label_conflict=d.on_label_conflict,
        unused_splits=("test",) if d.folds else (),  # cross-validation tests on a fold, never on test/
        csv_path_column=d.csv_path_column,
        csv_label_column=d.csv_label_column,
        csv_split_column=d.csv_split_column,
        csv_root=d.csv_root,
    )
    for path, reason in getattr(ds, "skipped", []):
        s.log(f"left out {path}: {reason}")
    for line in [*getattr(ds, "notes", []), *getattr(ds, "warnings", [])]:
        s.log(f"warning: {line}")
    # the choices the data's size and colours make
    s.cfg = resolve_recipe(s.cfg, n_train=_train_count(ds, d), channels=_channels(ds, d), log=s.log)
    d = s.cfg.data
    pre = s.weights.preprocessing if s.weights is not None else None
    data = prepare_data(
        ds,
        d,
        s.cfg.train.seed,
        s.device,
        channels_last=s.cfg.train.channels_last,
        stats=pre.stats if pre else None,
        resize_size=pre.resize_for(d.image_size or ds.image_size) if pre else None,
    )
    if data.val is None and s.cfg.train.early_stop_metric == "val_macro_f1":
        raise CnnlabError(
            "train.early_stop_metric val_macro_f1 needs a validation split, and this data has none "
            "(data.val_fraction 0?); use val_acc or val_loss, which then watch the training accuracy or loss"
        )
    if s.dist.active:  # each process trains on its slice of every epoch
        data.train.shard(s.dist.rank, s.dist.world)
    return ds, data


def _channels(ds, d) -> int:
    """The channels the network will see: ``data.channels``, else the data's own."""
    return d.channels or getattr(ds, "channels", None) or ds.train_images.shape[3]


def _train_count(ds, d) -> int:
    """About how many images will train: the training data less what validation (and a flat folder's
    test split) will take; used for the choices that depend on the data's size."""
    if isinstance(ds, ArrayDataset):
        n, carved = len(ds.train_labels), d.val_fraction
    else:
        splits, flat = getattr(ds, "splits", {}), getattr(ds, "layout", "") == "flat"
        n = len(splits.get("train") or [])  # a flat folder has everything there
        test_carved = d.test_fraction if flat or not splits.get("test") else 0
        carved = (0 if splits.get("val") else d.val_fraction) + test_carved
    return int(n * max(0.0, 1 - carved) * (d.train_fraction if d.train_fraction else 1))


# ---- step 3: model, fine-tuning, optimisation ------------------------------------------------------
def build_model(cfg: Config, classes: list[str], input_shape: list[int]) -> torch.nn.Module:
    c, h, _ = input_shape
    try:
        return create_model(cfg.model.name, num_classes=len(classes), in_channels=c, input_size=h, **cfg.model.kwargs)
    except (ValueError, TypeError) as e:  # a builder refusing this input (too small for its poolings, ...)
        advice = "see --image-size and model.kwargs"
        raise CnnlabError(f"cannot build {cfg.model.name} for {c}x{h}x{h} inputs: {e} ({advice})") from e


def build_parts(s: Session, data: PreparedData, find_lr: bool = True) -> Parts:
    """The model (initialised, fine-tuning applied), its optimiser, schedule and loss.

    The config's ``auto`` values are resolved here (``finetune.recipe.resolve_recipe``) and ``s.cfg``
    becomes the result (what config.yaml records). Under the fine-tune recipe with no ``optim.lr``, the
    LR finder picks the rate on the frozen network (``find_lr=False``: 1e-3 instead, for ``lr-find`` itself).
    """
    cfg = s.cfg
    model = init_weights(build_model(cfg, data.classes, data.input_shape), cfg.train.init).to(s.device)
    init_from_data(model, data.train)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    finetune_callbacks = prepare_model(model, cfg, s.log, weights=s.weights)
    prepare_head(model, cfg, data.train, s.log)  # LP-FT: the new head fitted on the frozen features
    loss_fn = _loss(cfg, data, s.device)
    finder = (lambda m, optim: recipe_lr(s, m, data, loss_fn, optim)) if find_lr else None
    n_train = data.train.num_samples  # the whole training split (a DDP shard's loader still counts all)
    cfg = s.cfg = resolve_recipe(cfg, model, find_lr=finder, n_train=n_train, log=s.log if find_lr else _silent)
    if cfg.model.bn_stats == "pretrained":
        keep_bn_statistics(model)
    eval_bn = cfg.model.bn_stats == "pretrained" or s.weights is not None  # batch norm in eval mode, all or part
    # torch.compile fuses a batch norm's arithmetic into the kernels around it by itself
    if eval_bn and not cfg.train.compile and (folded := fold_batchnorm(model)):
        s.log(f"BatchNorm folded into the convolution before it in {folded} places (eval-mode statistics)")
    if cfg.model.finetune == STAGED and find_lr:  # lr-find sweeps itself: no plan to announce
        describe_recipe(cfg, model, s.log)
    optimizer = build_optimizer(model, with_lr_decay(cfg.optim, model, cfg.model.lr_decay, cfg.model.body_lr_share))
    steps_per_epoch = -(-len(data.train) // max(1, cfg.train.accumulate))
    schedule = build_schedule(optimizer, cfg.sched, cfg.train.epochs, steps_per_epoch)
    return Parts(model, optimizer, schedule, loss_fn, finetune_callbacks)


def init_from_data(model: torch.nn.Module, loader, n: int = 5000) -> None:
    """A model with a data-dependent initialisation (``init_from_data``, e.g. airbench's whitening stem)
    gets the first ``n`` training images, normalised and not augmented: the same images on every rank,
    and on resume the checkpoint's weights replace the result."""
    hook = getattr(model, "init_from_data", None)
    if hook is not None:
        try:
            hook(loader.first_images(n))
        except ValueError as e:
            raise CnnlabError(f"cannot initialise the model from the training images: {e} (see model.kwargs)") from e


def _loss(cfg: Config, data: PreparedData, device: torch.device) -> torch.nn.Module:
    t = cfg.train
    weight = class_weights(data.counts["train"]).to(device) if cfg.data.balance == "weights" else None
    return build_loss(
        t.loss, label_smoothing=t.label_smoothing, weight=weight, gamma=t.focal_gamma, alpha=t.focal_alpha
    )


def recipe_lr(s: Session, model: torch.nn.Module, data: PreparedData, loss_fn, optim) -> float:
    """The LR finder's rate on the frozen network with ``optim``'s optimiser (rank 0's choice on every rank)."""
    found = find_head_lr(
        model, data.train, optim, loss_fn, generators=[data.generator], log=s.log, progress=s.cfg.output.progress
    )
    return broadcast(found, s.dist)


# ---- step 4: the run folder and the trainer --------------------------------------------------------
def new_run_folder(s: Session, ds, data: PreparedData) -> Path:
    """A new run folder with config.yaml, env.json, split.csv and data.json (rank 0 writes; all agree on it)."""
    run_dir = None
    if s.dist.main:
        run_dir = create_run_dir(s.cfg.output.root, s.cfg.output.name or default_run_name(s.cfg))
        _write_run_start(run_dir, s, ds, data)
    return broadcast(run_dir, s.dist)


def make_trainer(s: Session, parts: Parts, data: PreparedData, run_dir: Path, callbacks: list | None = None) -> Trainer:
    cfg = s.cfg
    callbacks = list(callbacks or [])
    if (cfg.output.tensorboard or cfg.output.mlflow) and s.dist.main:  # tracking as callbacks
        from cnnlab.engine.tracking import tracking_callbacks

        callbacks += tracking_callbacks(cfg, run_dir)
    if cfg.output.plots and data.test is not None and s.dist.main and spare_core():
        callbacks.append(ReportPreload())
    return Trainer(
        parts.model,
        parts.optimizer,
        parts.schedule,
        parts.loss_fn,
        data.train,
        data.val,
        cfg.train,
        run_dir,
        data.generator,
        log=s.log,
        progress=cfg.output.progress,
        callbacks=[*parts.callbacks, *callbacks],
        mixer=build_mixer(cfg.data.mixup, cfg.data.cutmix, torch.Generator().manual_seed(cfg.train.seed + 1)),
        dist=s.dist,
        forward_module=wrap_model(parts.model, s.dist, s.device),
    )


def resume_trainer(s: Session, trainer: Trainer, parts: Parts, run_dir: Path) -> None:
    trainer.resume(run_dir / "checkpoints" / "last.pt")
    for cb in parts.callbacks:  # progressive unfreezing: the blocks of the epoch we resume at
        cb(trainer, {})
    s.log(f"resuming {run_dir} after epoch {trainer.epoch}")


def describe(s: Session, data: PreparedData, parts: Parts) -> None:
    """The lines that say what is about to train (its rates, and what was done about imbalance)."""
    cfg = s.cfg
    n_val = data.val.num_samples if data.val else 0
    n_test = data.test.num_samples if data.test else 0
    s.log(
        f"training {cfg.model.name} on {cfg.data.name}: {data.train.num_samples} train / {n_val} val / "
        f"{n_test} test images, input {'x'.join(map(str, data.input_shape))}, device {s.device}"
    )
    if cfg.data.train_fraction < 1:
        s.log(
            f"training on a stratified {cfg.data.train_fraction:g} of the training split (data.train_fraction); "
            "validation and test stay whole, so their scores compare with full runs"
        )
    if cfg.data.folds:
        d = cfg.data
        s.log(f"cross-validation fold {d.fold} of {d.folds}: that fold is the test split, the other folds train")
    s.log(
        f"(one line per epoch; '*' marks a new best {cfg.train.early_stop_metric}, whose weights are saved as "
        "checkpoints/best.pt and become the model)"
    )
    names = {id(p): n for n, p in parts.model.named_parameters()}
    group_lrs = describe_group_lrs(parts.optimizer, names)
    if group_lrs:
        s.log(group_lrs)
    if cfg.data.balance != "none":
        applied = balance_summary(cfg.data.balance, data.counts["train"])["applied"]
        s.log(f"class imbalance: {applied}; train counts per class {data.counts['train']}")


# ---- step 5: finish --------------------------------------------------------------------------------
def finish(s: Session, trainer: Trainer, data: PreparedData, run_dir: Path) -> dict[str, Any]:
    """Best weights -> model file; test predictions.csv and metrics.json; plots and the HTML report."""
    cfg, model = s.cfg, trainer.model
    _load_best_weights(trainer, run_dir)
    meta = _model_meta(cfg, data, trainer, model)
    if s.weights is not None and s.weights.preprocessing is not None:  # what the pretrained weights expect
        meta["preprocessing"] = s.weights.preprocessing.to_dict()
    if data.resize_size:  # read by predict, serve, evaluate, export: the same resize-then-crop
        meta["resize_size"] = data.resize_size
    metrics: dict[str, Any] = {}
    if data.test is not None:
        metrics = _test_metrics(model, data, run_dir, tta=cfg.train.tta, amp=cfg.train.amp)
        metrics["tta"] = cfg.train.tta
        metrics["best_epoch"] = trainer.early.best_epoch
        metrics["train_seconds"] = trainer.seconds_before + time.perf_counter() - s.started  # summed over resumes
        if data.warnings:  # e.g. a leak kept with data.on_leak keep: the numbers above overstate
            metrics["warnings"] = data.warnings
        write_json(run_dir / "metrics.json", metrics)
        meta["metrics"] = {k: metrics[k] for k in ("accuracy", "top5_accuracy", "loss") if k in metrics}
    save_model_file(run_dir / "model", model, meta)
    for cb in trainer.callbacks:  # trackers log the test metrics, then close
        if hasattr(cb, "on_train_end"):
            cb.on_train_end(trainer, metrics)
    if cfg.output.plots:
        _write_plots(run_dir, trainer.history, metrics, data.classes)
    if cfg.output.plots and data.test is not None:  # HTML report; a failure there only warns
        from cnnlab.viz.report import write_report_safely

        write_report_safely(run_dir, log=s.log, device=s.device)
    return metrics


class ReportPreload:
    """A trainer callback that imports the HTML report's code (matplotlib with it: 0.41-0.64 s in runs of
    ``benchmarks/train_phases.py``) on a background thread once the first epoch has ended, so that
    :func:`finish` finds it imported. Only
    where torch leaves a core idle (``devices.spare_core``), and not during the first epoch: a fine-tune
    recipe's first epoch trains only the new head, forward passes whose many short operations each
    need the interpreter lock that the import holds (with the import at the start, that epoch took
    1.8-2.2 s against 1.2-1.6 s without a report: ``benchmarks/finetune_photos.py`` at 14cbf87, the
    2026-12-08 00:33 UTC rows of its results file), while the later epochs spend most of their time in
    backward passes, which release it."""

    def __init__(self) -> None:
        self.started = False

    def __call__(self, trainer: Trainer, row: dict) -> None:
        if not self.started:
            self.started = True
            threading.Thread(target=_import_quietly, args=("cnnlab.viz.report",), daemon=True).start()


def _import_quietly(module: str) -> None:
    with contextlib.suppress(Exception):  # the import at the end of the run raises it where it is handled
        importlib.import_module(module)


def _load_best_weights(trainer: Trainer, run_dir: Path) -> None:
    """The model becomes the best checkpoint's weights (the EMA average when EMA is on)."""
    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file() and trainer.early.best_epoch != trainer.epoch:  # else its weights are the model's now
        state = load_checkpoint(best)
        trainer.model.load_state_dict(state["model"])
        if state.get("ema"):  # EMA on: the averaged weights are the model (validation chose them)
            trainer.ema.load_state_dict(state["ema"])
    if trainer.ema is not None:
        trainer.model.load_state_dict(trainer.ema.module.state_dict())


def _test_metrics(model, data: PreparedData, run_dir: Path, tta: str = "none", amp: str = "none") -> dict[str, Any]:
    """Predict the test split once (under the training's autocast, as validation is): predictions.csv
    for every later command, metrics from the same logits."""
    logits, targets = predict(model, data.test, tta=tta, amp=amp)
    ids = [str(src) for split, src, _ in data.split_rows if split == "test"]
    write_predictions(run_dir / "predictions.csv", ids, targets, softmax(logits), data.classes)
    return classification_metrics(targets, logits.argmax(1), logits, data.classes)


def _write_run_start(run_dir: Path, s: Session, ds, data: PreparedData) -> None:
    cfg = s.cfg
    save_config(cfg, run_dir / "config.yaml")
    write_json(run_dir / "env.json", env_info(seed=cfg.train.seed, world_size=s.dist.world))
    write_split_csv(run_dir / "split.csv", data.split_rows)
    if isinstance(ds, FolderDataset):  # file hashes too, so --data.split_manifest can repeat this split
        write_folder_manifest(run_dir / "split_manifest.csv", ds, data.split_rows)
    summary = ds.summary()
    summary["class_counts"] = data.counts  # the splits as trained (val/test carved, train fraction applied)
    write_json(
        run_dir / "data.json",
        {
            **summary,
            "mean": data.mean,
            "std": data.std,
            "split_counts": data.counts,
            "input_shape": data.input_shape,
            "balance": balance_summary(cfg.data.balance, data.counts["train"]),
            "duplicate_groups": data.groups,  # kept on one side of every split carved here
            **({"cross_validation": _cv_scope(cfg, ds)} if cfg.data.folds else {}),
        },
    )


def _cv_scope(cfg: Config, ds) -> dict[str, Any]:
    """What a cross-validation fold tests on, for data.json (and the summary of ``cnnlab cv``)."""
    d = cfg.data
    own_test = len(ds.test_labels) if isinstance(ds, ArrayDataset) else len(ds.splits.get("test") or [])
    over = "the training split" if own_test else "all images"
    text = f"{over} of {d.name}" + (f" (its own test split, {own_test} images, is not used)" if own_test else "")
    return {"folds": d.folds, "fold": d.fold, "over": over, "own_test_unused": own_test, "text": text}


def _model_meta(cfg: Config, data: PreparedData, trainer: Trainer, model: torch.nn.Module) -> dict[str, Any]:
    kwargs = dict(cfg.model.kwargs)
    if isinstance(getattr(model, "spec", None), list):  # custom nets: the layer list itself, not its file path
        kwargs["spec"] = model.spec
    return {
        "architecture": cfg.model.name,
        "kwargs": kwargs,
        "classes": data.classes,
        "input_shape": data.input_shape,
        "mean": data.mean,
        "std": data.std,
        "decode": "cnnlab.data.images v1",
        "dataset": cfg.data.name,
        "best_epoch": trainer.early.best_epoch,
        "epochs_trained": trainer.epoch,
        "config": to_dict(cfg),
    }


def _write_plots(run_dir: Path, history, metrics, classes) -> None:
    from cnnlab.viz.plots import plot_confusion, plot_history

    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    if history:
        plot_history(history, plots / "curves.png")
    if metrics:
        cm = np.array(metrics["confusion_matrix"])
        plot_confusion(cm, classes, plots / "confusion.png", normalize=True)
        plot_confusion(cm, classes, plots / "confusion_counts.png", normalize=False)


def _silent(_: str) -> None:
    pass
