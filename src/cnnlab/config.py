"""One configuration: nested dataclasses <-> YAML <-> CLI flags, one-to-one.

Every leaf field ``section.key`` is a YAML key under ``section:`` and a flag ``--section.key``.
Unknown keys and values of the wrong type are errors that name the key (and suggest the nearest
one). The resolved config is written into every run folder as ``config.yaml``; loading that file
back gives an equal ``Config``.

The defaults are seed 000's recipe (Adam lr 1e-3 with weight decay 1e-4, ReduceLROnPlateau with
factor 0.5 / patience 3 / min 1e-6, gradient clipping at norm 1.0, early stopping with patience 5
on validation accuracy), applied to the bundled MNIST sample so that ``cnnlab train`` with no
arguments runs offline in about a minute.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path, PurePath
from typing import Any

import yaml

from cnnlab.errors import CnnlabError, did_you_mean


@dataclass
class DataConfig:
    name: str = "mnist-sample"  # registered name or folder:PATH
    root: str | None = None  # where dataset files live ($CNNLAB_DATA or ~/.cache/cnnlab/data if unset)
    download: bool = False  # fetch missing files (checksums verified); needs a network
    val_fraction: float = 0.1  # stratified, seeded share of the training data held out for validation
    test_fraction: float = 0.1  # only for a flat folder:PATH without a test/ split
    # train on this stratified, seeded share of the training split (quick experiments, learning curves);
    # validation and test stay whole, so scores stay comparable across fractions
    train_fraction: float = 1.0
    image_size: int | None = None  # resize folder images to this square side (default: dataset's own)
    channels: int | None = None  # force 1 or 3 channels (default: the dataset's)
    augment: str = "auto"  # augmentation preset; auto = seed preset for colour data, none for digits
    batch_size: int = 128
    eval_batch_size: int = 1000
    num_workers: int = 2  # DataLoader workers (image folders only; in-memory data needs none)
    on_bad_image: str = "fail"  # fail | skip (image folders)
    balance: str = "none"  # none | weights (class-weighted loss) | sampler (class-balanced sampling)
    mixup: float = 0.0  # MixUp Beta(alpha, alpha) parameter; 0 disables (batch level, loss on mixed targets)
    cutmix: float = 0.0  # CutMix Beta(alpha, alpha) parameter; 0 disables (with mixup too: one of them per batch)
    max_bad_fraction: float = 0.05  # with skip: stop when more than this share of the images is unreadable
    split_manifest: str | None = None  # image folders: reuse the exact split of an earlier run's split_manifest.csv
    folds: int = 0  # stratified K-fold cross-validation over the training data (cnnlab cv); 0: none
    fold: int = 1  # with folds: which fold (1..folds) is this run's test split; the other folds train


@dataclass
class ModelConfig:
    name: str = "seed_cnn"
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra builder arguments (e.g. dropout rates)
    pretrained: str | None = None  # imagenet (published weights) | local .pth/.safetensors/cnnlab folder; new head
    weights: str | None = None  # a published set by name: IMAGENET1K_V2, DEFAULT (timm: a tag); implies imagenet
    weights_mirror: str | None = None  # folder or http(s) URL holding weight files ($CNNLAB_WEIGHTS_MIRROR)
    # auto: the fine-tune recipe (staged) when pretrained weights are given, else finetune_all;
    # staged | finetune_all | feature_extraction | finetune_top | progressive
    finetune: str = "auto"
    head_epochs: int = 1  # staged: epochs that train only the new head (body frozen) before everything trains
    finetune_blocks: int = 1  # finetune_top: how many blocks below the head train
    unfreeze_schedule: str = "0:0,3:1,6:all"  # progressive: from EPOCH on, the top N blocks (or all) train
    # < 1: discriminative LRs, each block below the head gets lr_decay x the one above; null: 1, or under
    # the staged recipe the factor that gives the lowest block 1/100 of the head's LR
    lr_decay: float | None = None


DEFAULT_LR = 1e-3  # optim.lr when none is given and no recipe picks one (seed 000's Adam rate)


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float | None = None  # null: 1e-3, or under the staged fine-tune recipe the LR finder's suggestion
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD / RMSprop
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    alpha: float = 0.99  # RMSprop running-average decay
    rho: float = 0.9  # Adadelta running-average decay
    weight_decay_mode: str = "auto"  # auto (the optimiser's own) | l2 (added to the gradient) | decoupled
    no_decay_norm_bias: bool = False  # no weight decay on biases and normalisation parameters (1-D tensors)
    group_lr: dict[str, float] = field(default_factory=dict)  # parameter-name glob -> LR, e.g. {"fc*": 0.01}
    muon_momentum: float = 0.95  # muon: momentum of the orthogonalised filters and matrices (the rest: momentum)
    lookahead_k: int = 0  # Lookahead: sync slow weights every k steps; 0 disables
    lookahead_alpha: float = 0.5  # Lookahead slow-weight step size


@dataclass
class SchedConfig:
    # auto: plateau, or under the staged fine-tune recipe one-cycle restarting when the body unfreezes;
    # see `cnnlab.engine.schedulers.SCHEDULERS` (plateau, cosine, onecycle, step, ...)
    name: str = "auto"
    monitor: str = "val_loss"  # metric watched by plateau
    factor: float = 0.5
    patience: int = 3
    min_lr: float = 1e-6
    step_size: int = 10  # step: epochs between decays
    gamma: float = 0.1  # step / multistep / exponential: LR factor (exponential: per epoch)
    milestones: list[int] = field(default_factory=lambda: [30, 60, 90])  # multistep: epochs where LR *= gamma
    power: float = 1.0  # polynomial decay exponent (1 = linear)
    restart_epochs: int = 10  # cosine_restarts: length of the first cycle in epochs
    restart_mult: int = 1  # cosine_restarts: each cycle is this many times longer than the previous
    base_lr: float = 1e-4  # cyclic: lower LR bound (optim.lr is the upper bound)
    cycle_epochs: float = 2.0  # cyclic: epochs per half cycle (rise or fall)
    cycle_mode: str = "triangular"  # cyclic: triangular | triangular2 | exp_range
    pct_start: float = 0.25  # onecycle: share of the steps spent rising
    div_factor: float = 25.0  # onecycle: initial LR = optim.lr / div_factor
    final_div_factor: float = 1e4  # onecycle: final LR = initial LR / final_div_factor
    restarts: list[int] = field(default_factory=list)  # onecycle: epochs where a new cycle begins
    restart_peak: float = 0.5  # onecycle: each later cycle peaks at this times the one before
    warmup_epochs: float = 0.0  # linear warm-up before any schedule (fractions allowed)
    warmup_start: float = 0.0  # warm-up starts at this fraction of the LR


@dataclass
class TrainConfig:
    epochs: int = 8
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    grad_clip: float | None = 1.0  # max global L2 norm (or max |g| with grad_clip_mode value); null disables
    grad_clip_mode: str = "norm"  # norm | value
    loss: str = "cross_entropy"  # cross_entropy | focal
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0  # focal loss focusing strength
    focal_alpha: float | None = None  # focal loss class-balance weight (null: none)
    l1: float = 0.0  # L1 penalty coefficient added to the loss (sum |w| of weights)
    l2: float = 0.0  # L2 penalty coefficient added to the loss (sum w^2 of weights; not optimiser decay)
    init: str = "default"  # default | he_normal | he_uniform | xavier_normal | xavier_uniform | lecun_* | zero
    amp: str = "none"  # none | bf16 | fp16 (fp16 uses a gradient scaler)
    compile: bool = False  # torch.compile the model for training
    accumulate: int = 1  # gradient accumulation: optimiser step every N batches
    ema: float = 0.0  # EMA decay of the weights (e.g. 0.999); evaluation then uses the EMA weights; 0 disables
    tta: str = "none"  # test-time augmentation at evaluation: none | flip | flip-translate | flip-translate1
    skip_nonfinite: int = 0  # skip up to this many steps with a NaN/Inf loss before stopping
    # stop when the smoothed training loss exceeds this many times its lowest value so far (losses under
    # 0.01 count as 0.01); the last good checkpoint is kept; null disables
    divergence_factor: float | None = 100.0
    checkpoint_every: int = 0  # also save checkpoints/last.pt every N steps (mid-epoch resume); 0: per epoch
    log_steps: bool = True  # write steps.csv (global step, epoch, lr, loss) into the run folder
    early_stop_metric: str = "val_acc"  # val_acc | val_loss | val_macro_f1
    early_stop_patience: int | None = 5  # null disables early stopping
    early_stop_min_delta: float = 0.0
    channels_last: bool = True  # faster convolutions on CPU and GPU
    deterministic: bool = False
    threads: int | None = None  # torch CPU threads (default: torch's choice)


@dataclass
class OutputConfig:
    root: str = "runs"  # run folders go under here
    name: str | None = None  # run folder name (default: <dataset>-<model>); a number is appended if taken
    plots: bool = True
    progress: bool = True  # progress bar
    tensorboard: bool = False  # TensorBoard events in <run>/tensorboard: scalars, images, graph
    mlflow: bool = False  # also log to MLflow (needs `pip install mlflow`)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


# Where and how fast a run trains, not what it learns: the only keys ``--resume`` may change (a resumed
# run keeps its saved config otherwise), and ignored when cross-validation compares configs.
RUNTIME_KEYS = ("output.progress", "train.device", "train.threads", "data.num_workers")

# Short names used by the CLI (``--epochs``) and the Python API (``train(epochs=3)``) -> dotted keys.
SHORT_KEYS = {
    "data": "data.name",
    "data_root": "data.root",
    "download": "data.download",
    "batch_size": "data.batch_size",
    "augment": "data.augment",
    "balance": "data.balance",
    "image_size": "data.image_size",
    "on_bad_image": "data.on_bad_image",
    "model": "model.name",
    "pretrained": "model.pretrained",
    "weights": "model.weights",
    "weights_mirror": "model.weights_mirror",
    "finetune": "model.finetune",
    "optimizer": "optim.name",
    "lr": "optim.lr",
    "weight_decay": "optim.weight_decay",
    "scheduler": "sched.name",
    "epochs": "train.epochs",
    "seed": "train.seed",
    "device": "train.device",
    "out": "output.root",
    "name": "output.name",
    "tensorboard": "output.tensorboard",
}


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict/list/scalars, safe for YAML and JSON."""
    if is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type, data: dict[str, Any] | None, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, refusing unknown keys and wrong types."""
    data = data or {}
    if not isinstance(data, dict):
        raise CnnlabError(f"config key {prefix.rstrip('.') or '<root>'!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    for key in data:
        if key not in names:
            full = prefix + str(key)
            hint = did_you_mean(full, [prefix + n for n in names])
            raise CnnlabError(f"unknown config key {full!r}.{hint}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        tp = hints[f.name]
        if is_dataclass(tp):
            kwargs[f.name] = from_dict(tp, data[f.name], prefix + f.name + ".")
        else:
            kwargs[f.name] = coerce(data[f.name], tp, prefix + f.name)
    return cls(**kwargs)


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; convert int->float and list->tuple where lossless."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key)
            except CnnlabError as exc:
                errors.append(str(exc))
        raise CnnlabError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise CnnlabError(f"config key {key!r} expects a list ({_type_name(tp)}), got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise CnnlabError(f"config key {key!r} expects {len(args)} values, got {len(value)}")
            return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise CnnlabError(f"config key {key!r} expects a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string; it is a number here
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is str and isinstance(value, (str, PurePath)):
        return str(value)  # Path objects are welcome from Python
    raise CnnlabError(f"config key {key!r} expects {_type_name(tp)}, got {value!r} ({type(value).__name__})")


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def leaf_fields(cls: type = Config, prefix: str = "") -> dict[str, Any]:
    """All dotted leaf keys of the config with their annotations: {'optim.lr': float, ...}."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        tp = hints[f.name]
        if is_dataclass(tp):
            out.update(leaf_fields(tp, prefix + f.name + "."))
        else:
            out[prefix + f.name] = tp
    return out


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Return a new Config with dotted keys replaced. String values are parsed as YAML scalars.

    >>> apply_overrides(Config(), {"optim.lr": "0.01"}).optim.lr
    0.01
    """
    data = to_dict(cfg)
    leaves = leaf_fields()
    for key, value in overrides.items():
        if key not in leaves:
            raise CnnlabError(f"unknown config key {key!r}.{did_you_mean(key, leaves)}")
        if isinstance(value, str):
            value = _parse_scalar(value, leaves[key])
        section, _, name = key.rpartition(".")
        node = data
        for part in section.split("."):
            node = node[part]
        node[name] = value
    return check_ranges(from_dict(Config, data))


VAL_METRICS = ("val_acc", "val_loss", "val_macro_f1")  # what early stopping can watch
EPOCH_METRICS = (*VAL_METRICS, "train_acc", "train_loss")  # what an epoch's row holds (sched.monitor)


def check_ranges(cfg: Config) -> Config:
    """Refuse values of the right type that cannot train anything, before any data is read or any
    folder written (the key named, with the fix); names checked against a registry are checked by
    the components that own them."""
    t, d = cfg.train, cfg.data
    rules = [
        (t.epochs >= 1, f"train.epochs must be at least 1, got {t.epochs} (an untrained model is never saved)"),
        (
            t.divergence_factor is None or t.divergence_factor > 1,
            f"train.divergence_factor must be above 1 (or null to disable), got {t.divergence_factor}",
        ),
        (d.batch_size >= 1, f"data.batch_size must be at least 1, got {d.batch_size}"),
        (d.eval_batch_size >= 1, f"data.eval_batch_size must be at least 1, got {d.eval_batch_size}"),
        (
            t.accumulate >= 1,
            f"train.accumulate must be at least 1 (one optimiser step per N batches), got {t.accumulate}",
        ),
        (0 <= t.ema < 1, f"train.ema must be in [0, 1) (0 disables; 0.999 is typical), got {t.ema}"),
        (
            0 <= t.label_smoothing <= 1,
            f"train.label_smoothing must be in [0, 1] (0.1 is typical), got {t.label_smoothing}",
        ),
        (
            t.grad_clip is None or t.grad_clip > 0,
            f"train.grad_clip must be above 0 (or null to disable clipping), got {t.grad_clip}",
        ),
        (t.checkpoint_every >= 0, f"train.checkpoint_every must be 0 (per epoch) or more, got {t.checkpoint_every}"),
        (t.skip_nonfinite >= 0, f"train.skip_nonfinite must be 0 or more, got {t.skip_nonfinite}"),
        (t.threads is None or t.threads >= 0, f"train.threads must be 0 (torch's choice) or more, got {t.threads}"),
        (
            t.early_stop_metric in VAL_METRICS,
            f"train.early_stop_metric must be one of {', '.join(VAL_METRICS)}, got {t.early_stop_metric!r}",
        ),
        (
            cfg.sched.monitor in EPOCH_METRICS,
            f"sched.monitor must be one of {', '.join(EPOCH_METRICS)}, got {cfg.sched.monitor!r}",
        ),
    ]
    for ok, message in rules:
        if not ok:
            raise CnnlabError(message)
    _check_folds(d)
    return cfg


def _check_folds(d: DataConfig) -> None:
    if d.folds == 0:
        return
    if d.folds < 2:
        raise CnnlabError(
            f"data.folds (--folds) must be at least 2, got {d.folds}: cross-validation tests on one fold and "
            "trains on the others (0 turns it off)"
        )
    if not 1 <= d.fold <= d.folds:
        raise CnnlabError(f"data.fold must be between 1 and data.folds ({d.folds}), got {d.fold}")
    if d.split_manifest:
        raise CnnlabError("data.folds and data.split_manifest cannot be combined: the folds are the split; drop one")


def _parse_scalar(text: str, tp: Any) -> Any:
    # Strings stay strings for str fields ("1e-3" must not become a float in a name field).
    if tp is str or tp == (str | None):
        return None if text.lower() in ("null", "none") and tp is not str else text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply dotted overrides."""
    cfg = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise CnnlabError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise CnnlabError(f"config file {path} is not valid YAML: {exc}") from None
        cfg = from_dict(Config, data)
    return apply_overrides(cfg, overrides or {})


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def replace(cfg: Config, **sections: Any) -> Config:
    """``replace(cfg, train={"epochs": 3})`` -> new Config with those keys changed (validated)."""
    return apply_overrides(cfg, {f"{s}.{k}": v for s, kv in sections.items() for k, v in kv.items()})


__all__ = ["Config", "SHORT_KEYS", "load_config", "save_config", "apply_overrides", "leaf_fields", "replace"]
