"""Training loop and run folder for the NumPy engine (``cnnlab scratch train``).

It sits above :mod:`cnnlab.numpy_engine` (the layers, models and optimisers it trains) and
:mod:`cnnlab.runs` (the run folder it writes), beside the PyTorch path's :mod:`cnnlab.workflow`,
so the engine itself imports nothing above it.

The loop is the same as the PyTorch path's, written out plainly: shuffle, cut into mini-batches,
forward, loss, backward, optimiser step; then evaluate. Data come from the same dataset registry
(uint8 (N, H, W, C) arrays), with the same seeded stratified validation split and per-channel
normalisation computed on the training split only, and the run folder holds the same files:
``config.yaml``, ``env.json``, ``split.csv``, ``data.json``, ``history.csv`` (one row per epoch),
``metrics.json`` (final test metrics from ``cnnlab.evaluation.metrics``) and ``model/`` (here
``weights.npz`` + ``model.json`` instead of safetensors). torch is never imported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic
from cnnlab.numpy_engine.losses import CrossEntropyLoss
from cnnlab.numpy_engine.model import Module, manual_seed, save_npz
from cnnlab.numpy_engine.models import create_model
from cnnlab.numpy_engine.optim import OPTIMIZERS, Optimizer
from cnnlab.numpy_engine.threads import blas_threads, thread_limit


@dataclass
class ScratchConfig:
    """Everything that defines a NumPy-engine run (saved as config.yaml)."""

    model: str = "lenet"
    data: str = "mnist-sample"
    data_root: str | None = None  # folder with the dataset files (default: the registry's)
    epochs: int = 3
    batch_size: int = 64
    eval_batch_size: int = 256  # im2col of 256 CIFAR images is 80 MB; 1000 would be 300 MB
    optimizer: str = "adam"  # sgd | rmsprop | adam | adamw
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only (rmsprop and adam use torch's defaults)
    nesterov: bool = False  # sgd
    weight_decay: float = 0.0
    val_fraction: float = 0.1  # stratified, seeded share of the training data held out
    seed: int = 0
    # BLAS threads. 1 by default: LeNet-sized matrices gain nothing from a second thread (14.0 vs
    # 14.3 ms per step on 2 idle cores), and on busy cores extra threads spin-wait (7x slower
    # measured). None leaves the library default. See docs/benchmarks.md.
    threads: int | None = 1
    output_root: str = "runs"
    name: str | None = None
    progress: bool = True


@dataclass
class Batches:
    """uint8 images (N, H, W, C) + labels, turned into normalised float32 (B, C, H, W) batches on demand.

    Converting per batch keeps memory at the uint8 size (CIFAR-10 as float32 would be 600 MB).
    """

    images: np.ndarray
    labels: np.ndarray
    mean: np.ndarray  # (C,)
    std: np.ndarray  # (C,)
    scale: np.ndarray = field(init=False)
    shift: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        # (x/255 - mean)/std == x * scale - shift, one multiply-add per pixel
        self.scale = (1 / (255 * self.std)).astype(np.float32)[None, :, None, None]
        self.shift = (self.mean / self.std).astype(np.float32)[None, :, None, None]

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, idx: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        x = self.images[idx].transpose(0, 3, 1, 2).astype(np.float32)  # (B, C, H, W)
        x *= self.scale
        x -= self.shift
        return x, self.labels[idx]


def build_optimizer(params, cfg: ScratchConfig) -> Optimizer:
    """The registered optimiser with the options that apply to it."""
    kwargs: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        kwargs |= {"momentum": cfg.momentum, "nesterov": cfg.nesterov}
    factory = OPTIMIZERS.get(cfg.optimizer)
    try:
        return factory(params, **kwargs)
    except ValueError as exc:  # e.g. Nesterov without momentum
        raise CnnlabError(f"optimizer {cfg.optimizer!r}: {exc}") from None


def train_one_epoch(
    model: Module,
    loss_fn: CrossEntropyLoss,
    optimizer: Optimizer,
    data: Batches,
    batch_size: int,
    rng: np.random.Generator,
    progress: Any = None,
) -> dict[str, float]:
    """One pass over ``data`` in shuffled mini-batches; returns mean train loss and accuracy."""
    model.train()
    order = rng.permutation(len(data))
    total_loss, correct = 0.0, 0
    for start in range(0, len(order), batch_size):
        x, y = data.get(np.sort(order[start : start + batch_size]))  # sorted: faster gather, same batch
        logits = model.forward(x)
        loss = loss_fn.forward(logits, y)
        optimizer.zero_grad()
        model.backward(loss_fn.backward(), input_grad=False)
        optimizer.step()
        if not np.isfinite(loss):
            raise CnnlabError(f"the training loss became {loss}; lower the learning rate (--lr) and try again")
        total_loss += loss * len(y)
        correct += int((logits.argmax(1) == y).sum())
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.3f}", refresh=False)
    return {"train_loss": total_loss / len(data), "train_acc": correct / len(data)}


def predict(model: Module, data: Batches, batch_size: int = 256) -> np.ndarray:
    """Logits (N, K) in evaluation mode."""
    model.eval()
    chunks = [model.forward(data.get(slice(i, i + batch_size))[0]) for i in range(0, len(data), batch_size)]
    return np.concatenate(chunks)


def evaluate(model: Module, data: Batches, prefix: str = "val", batch_size: int = 256) -> dict[str, float]:
    """Mean cross-entropy, accuracy and macro F1 on ``data``: ``{prefix}_loss``, ``_acc``, ``_macro_f1``
    (the columns the PyTorch path writes)."""
    from cnnlab.evaluation.metrics import macro_f1

    logits = predict(model, data, batch_size)
    preds = logits.argmax(1)
    return {
        f"{prefix}_loss": CrossEntropyLoss().forward(logits, data.labels),
        f"{prefix}_acc": float((preds == data.labels).mean()),
        f"{prefix}_macro_f1": macro_f1(data.labels, preds, logits.shape[1]),
    }


@dataclass
class ScratchResult:
    run_dir: Path
    metrics: dict
    history: list[dict]


def fit(cfg: ScratchConfig, log: Callable[[str], None] = print, dataset: Any = None) -> ScratchResult:
    """Train ``cfg.model`` on ``cfg.data`` and write a run folder; returns where and what it measured.

    ``dataset`` (optional) is an already loaded ``ArrayDataset`` to use instead of ``cfg.data``.
    """
    from cnnlab.runs import create_run_dir
    from cnnlab.runs.folder import check_folder_name

    if cfg.name is not None:
        check_folder_name(cfg.name, "--name")  # before any data is read
    limiter = thread_limit(cfg.threads)
    try:
        manual_seed(cfg.seed)
        ds, train, val, test, rows = load_data(cfg, dataset)
        shape = {"num_classes": len(ds.classes), "in_channels": ds.channels, "input_size": ds.image_size}
        model = create_model(cfg.model, **shape)
        optimizer = build_optimizer(model.parameters(), cfg)  # before the run folder: bad options fail first
        run_dir = create_run_dir(cfg.output_root, cfg.name or f"{cfg.data}-scratch-{cfg.model}")
        _write_run_start(run_dir, cfg, ds, train, rows)
        log(
            f"training numpy-engine {cfg.model} ({model.num_parameters():,} parameters) on {cfg.data}: "
            f"{len(train)} train / {len(val) if val else 0} val / {len(test)} test images -> {run_dir}"
        )
        start = time.perf_counter()
        history = train_epochs(model, optimizer, cfg, train, val, run_dir, log)
        metrics = final_metrics(model, test, ds.classes, cfg.eval_batch_size, run_dir / "predictions.csv")
        metrics |= {"train_seconds": time.perf_counter() - start, "engine": "numpy"}
        _write_run_end(run_dir, model, cfg, ds, train, metrics, shape)
        log(f"test accuracy {metrics['accuracy']:.4f}  ({metrics['train_seconds']:.1f} s)  run folder: {run_dir}")
        return ScratchResult(run_dir, metrics, history)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()


def train_epochs(
    model: Module,
    optimizer: Optimizer,
    cfg: ScratchConfig,
    train: Batches,
    val: Batches | None,
    run_dir: Path,
    log: Callable[[str], None],
) -> list[dict]:
    """The epoch loop: train, validate, append a row to history.csv, print it."""
    from cnnlab.runs import write_history_csv

    loss_fn = CrossEntropyLoss()
    rng = np.random.default_rng(cfg.seed)
    history: list[dict] = []
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        bar = _progress(-(-len(train) // cfg.batch_size), f"epoch {epoch}/{cfg.epochs}", cfg.progress)
        row: dict[str, Any] = {"epoch": epoch}
        try:
            row |= train_one_epoch(model, loss_fn, optimizer, train, cfg.batch_size, rng, bar)
        finally:
            if bar is not None:
                bar.close()
        row["lr"] = optimizer.lr  # same column order as the PyTorch path's history.csv
        if val is not None:
            row |= evaluate(model, val, "val", cfg.eval_batch_size)
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        write_history_csv(run_dir / "history.csv", history)
        log("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    return history


def _write_run_end(run_dir: Path, model: Module, cfg: ScratchConfig, ds, train: Batches, metrics: dict, shape) -> None:
    """metrics.json and model/ (weights.npz + model.json with everything needed to rebuild and predict)."""
    from cnnlab.runs import write_json

    write_json(run_dir / "metrics.json", metrics)
    meta = {
        "engine": "numpy",
        "architecture": cfg.model,
        "kwargs": shape,
        "classes": list(ds.classes),
        "input_shape": [ds.channels, ds.image_size, ds.image_size],
        "mean": train.mean.tolist(),
        "std": train.std.tolist(),
        "dataset": cfg.data,
        "epochs_trained": cfg.epochs,
        "metrics": {k: metrics[k] for k in ("accuracy", "top5_accuracy", "loss") if k in metrics},
    }
    save_npz(model, run_dir / "model" / "weights.npz", meta)
    write_json(run_dir / "model" / "model.json", meta)


def final_metrics(
    model: Module, test: Batches, classes: list[str], batch_size: int = 256, predictions: Path | None = None
) -> dict:
    """The PyTorch path's test metrics (accuracy, per-class precision/recall/F1, confusion, loss); with
    ``predictions``, the test predictions are saved there too (predictions.csv, read by every command)."""
    from cnnlab.evaluation.metrics import classification_metrics, softmax
    from cnnlab.runs.predictions import write_predictions

    logits = predict(model, test, batch_size)
    if predictions is not None:  # ids: the test index, as in split.csv
        ids = [str(i) for i in range(len(test.labels))]
        write_predictions(predictions, ids, test.labels, softmax(logits), list(classes))
    return classification_metrics(test.labels, logits.argmax(1), logits, list(classes))


def load_data(cfg: ScratchConfig, dataset: Any = None):
    """Dataset from the registry (or ``dataset``) -> (dataset, train, val or None, test, split rows)."""
    from cnnlab.data.datasets import ArrayDataset, load_dataset
    from cnnlab.data.splits import channel_stats, stratified_split

    ds = dataset if dataset is not None else load_dataset(cfg.data, root=cfg.data_root)
    if not isinstance(ds, ArrayDataset):
        raise CnnlabError(
            f"the NumPy engine trains on in-memory datasets (mnist, cifar10, ...); {cfg.data!r} is a folder. "
            "Use 'cnnlab train' (PyTorch) for image folders."
        )
    keep, held = stratified_split(ds.train_labels, cfg.val_fraction, cfg.seed)
    mean, std = (np.asarray(v, dtype=np.float64) for v in channel_stats(ds.train_images[keep]))
    y = ds.train_labels
    train = Batches(ds.train_images[keep], y[keep], mean, std)
    val = Batches(ds.train_images[held], y[held], mean, std) if len(held) else None
    test = Batches(ds.test_images, ds.test_labels, mean, std)
    rows = [("train", int(i), int(y[i])) for i in keep] + [("val", int(i), int(y[i])) for i in held]
    rows += [("test", int(i), int(t)) for i, t in enumerate(ds.test_labels)]
    return ds, train, val, test, rows


def _write_run_start(run_dir: Path, cfg: ScratchConfig, ds, train: Batches, rows: list) -> None:
    import yaml

    from cnnlab.data.splits import write_split_csv
    from cnnlab.runs import env_info, write_json

    atomic.write_text(run_dir / "config.yaml", yaml.safe_dump({"engine": "numpy", **asdict(cfg)}, sort_keys=False))
    write_json(run_dir / "env.json", env_info(seed=cfg.seed, engine="numpy", blas_threads=blas_threads()))
    write_split_csv(run_dir / "split.csv", rows)
    write_json(run_dir / "data.json", {**ds.summary(), "mean": train.mean.tolist(), "std": train.std.tolist()})


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5)
