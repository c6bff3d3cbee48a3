"""The Python API behind ``cnnlab train`` and ``cnnlab evaluate``, usable from a notebook::

    import cnnlab
    result = cnnlab.train(data="mnist-sample", model="seed_cnn", epochs=3)
    print(result.metrics["accuracy"], result.run_dir)
    metrics = cnnlab.evaluate(result.run_dir)

``train`` follows the data flow of docs/architecture.md: config -> dataset -> split and
normalisation -> loaders -> model -> optimiser/schedule/loss -> Trainer -> best weights -> test
metrics -> run folder (config, env, split, history, metrics, model file, checkpoints, plots).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.config import SHORT_KEYS, Config, apply_overrides, load_config, save_config, to_dict
from cnnlab.data.augment import build_mixer
from cnnlab.data.datasets import ArrayDataset, FolderDataset, load_dataset, write_folder_manifest
from cnnlab.data.pipeline import PreparedData, eval_loader, prepare_data
from cnnlab.data.splits import folder_splits_from_csv, write_split_csv
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.engine.distributed import broadcast, init_distributed, shutdown, wrap_model
from cnnlab.engine.finetune import setup_finetune
from cnnlab.engine.init import init_weights
from cnnlab.engine.loop import predict
from cnnlab.engine.losses import build_loss, class_weights
from cnnlab.engine.optim import build_optimizer
from cnnlab.engine.schedulers import build_schedule
from cnnlab.engine.trainer import Trainer
from cnnlab.errors import CnnlabError
from cnnlab.evaluation.metrics import classification_metrics, format_report
from cnnlab.models import create_model
from cnnlab.runs import create_run_dir, env_info, read_json, write_json
from cnnlab.runs.model_file import load_model, save_model_file


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]  # test metrics of the best checkpoint
    history: list[dict[str, float]]
    config: Config


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnlabError(f"device {name!r} was asked for but CUDA is not available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise CnnlabError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def make_config(
    config: Config | str | Path | None = None, overrides: dict[str, Any] | None = None, **short: Any
) -> Config:
    """Config from a Config/YAML path, dotted overrides (``{"optim.lr": 0.01}``) and short names
    (``epochs=3, lr=0.01, data="cifar10"``; see ``config.SHORT_KEYS``)."""
    cfg = config if isinstance(config, Config) else load_config(config)
    unknown = [k for k in short if k not in SHORT_KEYS]
    if unknown:
        raise CnnlabError(f"unknown argument(s) {unknown}; use one of {sorted(SHORT_KEYS)} or overrides={{'a.b': v}}")
    merged = {SHORT_KEYS[k]: v for k, v in short.items() if v is not None}
    merged.update(overrides or {})
    return apply_overrides(cfg, merged)


def build_model(cfg: Config, classes: list[str], input_shape: list[int]) -> torch.nn.Module:
    c, h, _ = input_shape
    return create_model(cfg.model.name, num_classes=len(classes), in_channels=c, input_size=h, **cfg.model.kwargs)


def train(
    config: Config | str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    resume: str | Path | None = None,
    log=print,
    callbacks: list | None = None,
    **short: Any,
) -> TrainResult:
    """Train a model and write a run folder. See the module docstring for an example.

    Args:
        config: a Config, a YAML file, or None for the defaults (seed recipe on the MNIST sample).
        overrides: dotted keys, e.g. ``{"optim.name": "sgd", "optim.lr": 0.05}``.
        resume: a run folder to continue from its ``checkpoints/last.pt`` (same config).
        log: where progress lines go (``print``; ``lambda s: None`` for silence).
        callbacks: functions ``cb(trainer, row)`` called after every epoch (see engine.trainer.Trainer).
        **short: short names as on the command line: data, data_root, model, epochs, lr, batch_size, seed, ...
    """
    start = time.perf_counter()
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise CnnlabError(
                f"{run_dir} is not a run folder (no config.yaml); give the folder printed by 'cnnlab train'"
            )
        cfg = load_config(run_dir / "config.yaml")
    else:
        cfg = make_config(config, overrides, **short)
    device = resolve_device(cfg.train.device)
    dist_info, device = init_distributed(device)  # torchrun / --nproc: join the process group
    if not dist_info.main:
        log = lambda s: None  # noqa: E731 - rank 0 speaks for every rank
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic)

    ds = load_dataset(
        cfg.data.name,
        root=cfg.data.root,
        download=cfg.data.download,
        image_size=cfg.data.image_size,
        channels=cfg.data.channels,
        on_bad_image=cfg.data.on_bad_image,
        max_bad_fraction=cfg.data.max_bad_fraction,
        manifest=cfg.data.split_manifest,
    )
    for path, reason in getattr(ds, "skipped", []):
        log(f"skipped unreadable image {path}: {reason}")
    data = prepare_data(ds, cfg.data, cfg.train.seed, device, channels_last=cfg.train.channels_last)
    if dist_info.active:  # each process trains on its slice of every epoch
        data.train.shard(dist_info.rank, dist_info.world)
    model = init_weights(build_model(cfg, data.classes, data.input_shape), cfg.train.init).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optim_cfg, finetune_callbacks = setup_finetune(model, cfg.model, cfg.optim, log)
    optimizer = build_optimizer(model, optim_cfg)
    steps_per_epoch = -(-len(data.train) // max(1, cfg.train.accumulate))
    schedule = build_schedule(optimizer, cfg.sched, cfg.train.epochs, steps_per_epoch)
    loss_fn = _build_loss(cfg, data, device)

    if resume is None:
        if dist_info.main:
            run_dir = create_run_dir(cfg.output.root, cfg.output.name or _default_name(cfg))
            _write_run_start(run_dir, cfg, ds, data)
        run_dir = broadcast(run_dir if dist_info.main else None, dist_info)
    if (cfg.output.tensorboard or cfg.output.mlflow) and dist_info.main:  # tracking as callbacks (cnnlab.tracking)
        from cnnlab.tracking import tracking_callbacks

        callbacks = [*(callbacks or []), *tracking_callbacks(cfg, run_dir)]
    trainer = Trainer(
        model,
        optimizer,
        schedule,
        loss_fn,
        data.train,
        data.val,
        cfg.train,
        run_dir,
        data.generator,
        log=log,
        progress=cfg.output.progress,
        callbacks=[*finetune_callbacks, *(callbacks or [])],
        mixer=build_mixer(cfg.data.mixup, cfg.data.cutmix, torch.Generator().manual_seed(cfg.train.seed + 1)),
        dist=dist_info,
        forward_module=wrap_model(model, dist_info, device),
    )
    if resume is not None:
        trainer.resume(run_dir / "checkpoints" / "last.pt")
        for cb in finetune_callbacks:  # progressive unfreezing: the blocks of the epoch we resume at
            cb(trainer, {})
        log(f"resuming {run_dir} after epoch {trainer.epoch}")
    log(
        f"training {cfg.model.name} on {cfg.data.name}: {data.train.num_samples} train / "
        f"{data.val.num_samples if data.val else 0} val / {data.test.num_samples if data.test else 0} test images, "
        f"input {'x'.join(map(str, data.input_shape))}, device {device}"
    )
    if cfg.data.balance != "none":
        log(
            f"class imbalance: {_balance_summary(cfg.data.balance, data.counts['train'])['applied']}; "
            f"train counts per class {data.counts['train']}"
        )
    history = trainer.fit()
    if not dist_info.main:  # rank 0 writes the model file, metrics and plots
        shutdown(dist_info)
        return TrainResult(run_dir=run_dir, metrics={}, history=history, config=cfg)

    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        state = load_checkpoint(best)
        model.load_state_dict(state["model"])
        if state.get("ema"):  # EMA on: the averaged weights are the model (validation chose them)
            trainer.ema.load_state_dict(state["ema"])
    if trainer.ema is not None:
        model.load_state_dict(trainer.ema.module.state_dict())
    meta = _model_meta(cfg, data, trainer, model)
    save_model_file(run_dir / "model", model, meta)
    metrics = {}
    if data.test is not None:
        metrics = _final_metrics(model, data.test, data.classes, tta=cfg.train.tta)
        metrics["best_epoch"] = trainer.early.best_epoch
        metrics["train_seconds"] = trainer.seconds_before + time.perf_counter() - start  # summed over resumes
        write_json(run_dir / "metrics.json", metrics)
        meta["metrics"] = {k: metrics[k] for k in ("accuracy", "top5_accuracy", "loss") if k in metrics}
        save_model_file(run_dir / "model", model, meta)
    for cb in trainer.callbacks:  # trackers log the test metrics, then close
        if hasattr(cb, "on_train_end"):
            cb.on_train_end(trainer, metrics)
    if cfg.output.plots:
        _write_plots(run_dir, history, metrics, data.classes)
    if cfg.output.plots and data.test is not None:  # HTML report; a failure there only warns
        from cnnlab.viz.report import write_report_safely

        write_report_safely(run_dir, log=log, device=device)
    shutdown(dist_info)
    return TrainResult(run_dir=run_dir, metrics=metrics, history=history, config=cfg)


def _default_name(cfg: Config) -> str:
    data = cfg.data.name
    if data.startswith("folder:"):
        data = Path(data[len("folder:") :]).expanduser().resolve().name or "folder"
    return f"{data}-{cfg.model.name}"


def _write_run_start(run_dir: Path, cfg: Config, ds, data: PreparedData) -> None:
    save_config(cfg, run_dir / "config.yaml")
    write_json(run_dir / "env.json", env_info(seed=cfg.train.seed))
    write_split_csv(run_dir / "split.csv", data.split_rows)
    if isinstance(ds, FolderDataset):  # file hashes too, so --data.split_manifest can repeat this split
        write_folder_manifest(run_dir / "split_manifest.csv", ds, data.split_rows)
    write_json(
        run_dir / "data.json",
        {
            **ds.summary(),
            "mean": data.mean,
            "std": data.std,
            "split_counts": data.counts,
            "input_shape": data.input_shape,
            "balance": _balance_summary(cfg.data.balance, data.counts["train"]),
        },
    )


def _balance_summary(mode: str, train_counts: list[int]) -> dict[str, Any]:
    """What was done about class imbalance, for data.json, the log and the report."""
    what = {
        "none": "nothing (plain loss, uniform sampling)",
        "weights": "class-weighted loss, weight n / (K * n_k) per class",
        "sampler": "class-balanced sampling: each class drawn equally often",
    }.get(mode, mode)
    out: dict[str, Any] = {"mode": mode, "applied": what, "train_counts": train_counts}
    if mode == "weights":
        out["class_weights"] = [round(float(w), 6) for w in class_weights(train_counts)]
    return out


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


def _build_loss(cfg: Config, data: PreparedData, device: torch.device) -> torch.nn.Module:
    t = cfg.train
    weight = class_weights(data.counts["train"]).to(device) if cfg.data.balance == "weights" else None
    smoothing = t.label_smoothing
    return build_loss(t.loss, label_smoothing=smoothing, weight=weight, gamma=t.focal_gamma, alpha=t.focal_alpha)


def _final_metrics(model, loader, classes, tta: str = "none") -> dict[str, Any]:
    logits, targets = predict(model, loader, tta=tta)
    return classification_metrics(targets, logits.argmax(1), logits, classes)


def _write_plots(run_dir: Path, history, metrics, classes) -> None:
    from cnnlab.viz.plots import plot_confusion, plot_history

    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    if history:
        plot_history(history, plots / "curves.png")
    if metrics:
        plot_confusion(np.array(metrics["confusion_matrix"]), classes, plots / "confusion.png", normalize=True)
        plot_confusion(np.array(metrics["confusion_matrix"]), classes, plots / "confusion_counts.png", normalize=False)


def evaluate(
    run_or_model: str | Path,
    data: str | None = None,
    data_root: str | None = None,
    split: str = "test",
    batch_size: int = 1000,
    device: str = "auto",
    save: bool = True,
) -> dict[str, Any]:
    """Evaluate a trained model (a run folder or a model folder) on a dataset split.

    Without ``data``, the run's own dataset and test split are used (for image folders, the exact
    files recorded in the run's split.csv). Class names and order must match the model's.
    """
    path = Path(run_or_model)
    dev = resolve_device(device)
    model, meta = load_model(path, dev)
    run_dir = path if (path / "config.yaml").is_file() else None
    name = data or meta.get("dataset")
    if name is None:
        raise CnnlabError(f"{path}: say which data to evaluate on with --data")
    root = data_root or (meta.get("config", {}).get("data", {}).get("root") if data is None else None)
    ds = load_dataset(name, root=root)
    if list(ds.classes) != list(meta["classes"]):
        raise CnnlabError(
            f"the classes of {name} {ds.classes} differ from the model's {meta['classes']} (names and order must match)"
        )
    if isinstance(ds, FolderDataset) and run_dir is not None and data is None:
        ds.splits = folder_splits_from_csv(run_dir / "split.csv", ds.root)
    loader = eval_loader(ds, split, meta, dev, batch_size=batch_size)
    metrics = _final_metrics(model, loader, meta["classes"])
    metrics.update({"data": name, "split": split})
    if save and run_dir is not None:
        tag = "metrics.json" if data is None and split == "test" else f"eval-{_slug(name)}-{split}.json"
        write_json(run_dir / tag, {**(read_json(run_dir / tag) if (run_dir / tag).is_file() else {}), **metrics})
    return metrics


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name).strip("_")[:60]


__all__ = ["train", "evaluate", "TrainResult", "make_config", "format_report", "ArrayDataset"]
