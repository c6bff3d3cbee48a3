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

import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path, PurePath
from typing import Any

import yaml

from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.files import atomic
from cnnlab.readers import load_yaml, read_yaml


# ---- rules: what each value must be, declared beside its field ---------------------------------------
@dataclass(frozen=True)
class Rule:
    """A range or choice for one config value: ``check(value)`` is None when it fits, else what it must be
    ("at least 1", "in (0, 1)") for the message 'KEY must be ..., got VALUE'. ``text`` describes the rule in
    ``--help``. A nullable key's None is never checked (null is its own meaning: off, or the default)."""

    check: Callable[[Any], str | None]
    text: str


def count(lo: int, hi: int, why: str = "") -> Rule:
    """A whole number in [lo, hi] (every count has a ceiling: a huge one overflows, or allocates, later)."""
    low = f"{lo} or more" if lo == 0 else f"at least {lo}"
    return Rule(lambda v: f"{low}{why}" if v < lo else f"at most {hi:,}{why}" if v > hi else None, f"{lo}..{hi:,}")


def at_least(lo: float, why: str = "") -> Rule:
    low = f"{lo:g} or more" if lo == 0 else f"at least {lo:g}"
    return Rule(lambda v: None if v >= lo else low + why, f">= {lo:g}")


def above(lo: float, why: str = "") -> Rule:
    return Rule(lambda v: None if v > lo else f"above {lo:g}{why}", f"> {lo:g}")


def interval(spec: str, why: str = "") -> Rule:
    """``interval("[0, 1)")``: brackets include the end, parentheses exclude it."""
    lo, hi = (float(x) for x in spec[1:-1].split(","))
    closed_lo, closed_hi = spec[0] == "[", spec[-1] == "]"

    def check(v: float) -> str | None:
        inside = (v >= lo if closed_lo else v > lo) and (v <= hi if closed_hi else v < hi)
        return None if inside else f"in {spec}{why}"

    return Rule(check, spec)


def one_of(*choices: Any) -> Rule:
    words = ", ".join(map(str, choices))
    return Rule(lambda v: None if v in choices else f"one of {words}", words)


def matches(pattern: str, words: str) -> Rule:
    compiled = re.compile(pattern)
    return Rule(lambda v: None if compiled.fullmatch(v) else words, words)


def each(rule: Rule, max_items: int = 1000) -> Rule:
    """Every item of a list (or value of a mapping) obeys ``rule``; at most ``max_items`` of them."""

    def check(v: Any) -> str | None:
        items = list(v.values()) if isinstance(v, dict) else list(v)
        if len(items) > max_items:
            return f"at most {max_items} items long"
        bad = next((x for x in items if rule.check(x)), None)
        return None if bad is None else f"a list whose every value is {rule.check(bad)} ({_show(bad)} is not)"

    return Rule(check, f"each {rule.text}")


NONEMPTY = Rule(lambda v: None if v.strip() else "a non-empty name", "non-empty")
IDENTIFIERS = Rule(
    lambda v: next((f"a mapping of argument names ({_show(k)} is not one)" for k in v if not _identifier(k)), None),
    "argument names",
)


def _identifier(k: Any) -> bool:
    return isinstance(k, str) and k.isidentifier()


def setting(
    default: Any = None, rule: Rule | None = None, *, factory: Callable[[], Any] | None = None, names: str = ""
) -> Any:
    """A config field with its rule in the field's metadata (:func:`check_ranges` applies every rule).

    ``names`` marks a name looked up in a registry ("optimizer", "model", ...): the registries live
    above this module, so :func:`check_names` gets them from its caller (``workflow.check_config``)."""
    meta = {"rule": rule} if rule is not None else {}
    if names:
        meta["names"] = names
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


MAX_EPOCHS = 100_000  # any epoch count or position
MAX_IMAGE_SIZE = 4096  # one 4096x4096 RGB float image is 200 MB; a batch of them is the memory's limit
MAX_BATCH = 1 << 20
VAL_METRICS = ("val_acc", "val_loss", "val_macro_f1")  # what early stopping can watch
EPOCH_METRICS = (*VAL_METRICS, "train_acc", "train_loss")  # what an epoch's row holds (sched.monitor)
UNIT = interval("[0, 1]")
LEAK_POLICIES = ("fail", "drop", "keep")  # data.on_leak
CONFLICT_POLICIES = ("fail", "drop")  # data.on_label_conflict


@dataclass
class DataConfig:
    name: str = setting("mnist-sample", NONEMPTY)  # registered name, folder:PATH or csv:FILE
    root: str | None = None  # where dataset files live ($CNNLAB_DATA or ~/.cache/cnnlab/data if unset)
    download: bool = False  # fetch missing files (checksums verified); needs a network
    # stratified, seeded share of the training data held out for validation
    val_fraction: float = setting(0.1, interval("[0, 1)"))
    test_fraction: float = setting(0.1, interval("[0, 1)"))  # only for a flat folder:PATH without a test/ split
    # train on this stratified, seeded share of the training split (quick experiments, learning curves);
    # validation and test stay whole, so scores stay comparable across fractions
    train_fraction: float = setting(1.0, interval("(0, 1]"))
    # resize folder images to this square side (default: dataset's own)
    image_size: int | None = setting(None, count(1, MAX_IMAGE_SIZE))
    channels: int | None = setting(None, one_of(1, 3))  # force 1 or 3 channels (default: the dataset's)
    # augmentation preset; auto = seed preset for colour data, none for digits
    augment: str = setting("auto", NONEMPTY, names="augmentation")
    batch_size: int = setting(128, count(1, MAX_BATCH))
    eval_batch_size: int = setting(1000, count(1, MAX_BATCH))
    num_workers: int = setting(2, count(0, 256))  # DataLoader workers (image folders only; in-memory data needs none)
    # an image-folder split whose decoded images take at most this many MiB is decoded once into memory and
    # needs no workers (0: decode every epoch)
    cache_mb: int = setting(512, count(0, 1 << 20))
    on_bad_image: str = setting("fail", one_of("fail", "skip"))  # fail | skip (image folders)
    # none | weights (class-weighted loss) | sampler (class-balanced sampling)
    balance: str = setting("none", one_of("none", "weights", "sampler"))
    # MixUp Beta(alpha, alpha) parameter; 0 disables (batch level, loss on mixed targets)
    mixup: float = setting(0.0, at_least(0))
    # CutMix Beta(alpha, alpha) parameter; 0 disables (with mixup too: one of them per batch)
    cutmix: float = setting(0.0, at_least(0))
    # with skip: stop when more than this share of the images is unreadable
    max_bad_fraction: float = setting(0.05, UNIT)
    # one image (the same bytes) in train and in val/test of given splits: fail | drop (its training
    # copies) | keep (train anyway; metrics.json and the report carry a warning)
    on_leak: str = setting("fail", one_of(*LEAK_POLICIES))
    # one image (the same bytes) under two labels: fail | drop (every copy)
    on_label_conflict: str = setting("fail", one_of(*CONFLICT_POLICIES))
    # csv:FILE data: the columns holding each image's path, label and split (null: found by their header
    # names, see cnnlab.data.labels_csv), and the folder the paths are relative to (null: the CSV's own)
    csv_path_column: str | None = setting(None, NONEMPTY)
    csv_label_column: str | None = setting(None, NONEMPTY)
    csv_split_column: str | None = setting(None, NONEMPTY)
    csv_root: str | None = setting(None, NONEMPTY)
    split_manifest: str | None = None  # image folders: reuse the exact split of an earlier run's split_manifest.csv
    # stratified K-fold cross-validation over the training data (cnnlab cv); 0: none
    folds: int = setting(0, count(0, 1000))
    # with folds: which fold (1..folds) is this run's test split; the other folds train
    fold: int = setting(1, count(1, 1000))


@dataclass
class ModelConfig:
    name: str = setting("seed_cnn", NONEMPTY, names="model")
    # extra builder arguments (e.g. dropout rates); names checked against the builder before data is read
    kwargs: dict[str, Any] = setting(rule=IDENTIFIERS, factory=dict)
    pretrained: str | None = None  # imagenet (published weights) | local .pth/.safetensors/cnnlab folder; new head
    weights: str | None = None  # a published set by name: IMAGENET1K_V2, DEFAULT (timm: a tag); implies imagenet
    weights_mirror: str | None = None  # folder or http(s) URL holding weight files ($CNNLAB_WEIGHTS_MIRROR)
    # auto: the fine-tune recipe (staged) when pretrained weights are given, else finetune_all;
    # staged | finetune_all | feature_extraction | finetune_top | progressive
    finetune: str = setting("auto", NONEMPTY, names="fine-tuning strategy")
    # the new head: zero (starts at chance) | fit (logistic regression on the frozen body's features before
    # training: LP-FT, cnnlab.finetune.head) | auto (zero)
    head_init: str = setting("auto", one_of("auto", "zero", "fit"))
    # staged: epochs that train only the new head (body frozen) before everything trains; null: 0 with a
    # fitted head (the fit is the head's training), else 1
    head_epochs: int | None = setting(None, count(0, MAX_EPOCHS))
    finetune_blocks: int = setting(1, count(0, 10_000))  # finetune_top: how many blocks below the head train
    # progressive: from EPOCH on, the top N blocks (or all) train
    unfreeze_schedule: str = setting("0:0,3:1,6:all", NONEMPTY, names="unfreeze schedule")
    # < 1: discriminative LRs, each block below the head gets lr_decay x the one above; null: 1
    lr_decay: float | None = setting(None, interval("(0, 1]"))
    # the top block below the head trains at this share of the head's LR (then lr_decay per block further
    # down); null: lr_decay, or under the staged recipe 0.1 (a pretrained body moves ten times slower; 1 from
    # a fitted head)
    body_lr_share: float | None = setting(None, interval("(0, 1]"))
    # BatchNorm running statistics: pretrained (kept: BN layers stay in eval mode, their scale and shift
    # still train) | update (re-estimated on your data) | auto (pretrained under the staged recipe with fewer
    # than 10,000 training images, else update)
    bn_stats: str = setting("auto", one_of("auto", "pretrained", "update"))


DEFAULT_LR = 1e-3  # optim.lr when none is given and no recipe picks one (seed 000's Adam rate)


@dataclass
class OptimConfig:
    # auto: adamw under the staged fine-tune recipe, else adam (cnnlab.finetune.recipe.resolve_recipe)
    name: str = setting("auto", NONEMPTY, names="optimizer")
    # null: 1e-3; under the staged fine-tune recipe 2e-3 for AdamW (recipe.NEW_HEAD_LR), the LR finder's for SGD
    lr: float | None = setting(None, above(0))
    weight_decay: float = setting(1e-4, at_least(0))
    momentum: float = setting(0.9, interval("[0, 1)"))  # SGD / RMSprop
    nesterov: bool = False
    betas: tuple[float, float] = setting((0.9, 0.999), each(interval("[0, 1)")))
    eps: float = setting(1e-8, above(0))
    alpha: float = setting(0.99, UNIT)  # RMSprop running-average decay
    rho: float = setting(0.9, UNIT)  # Adadelta running-average decay
    # auto (the optimiser's own) | l2 (added to the gradient) | decoupled
    weight_decay_mode: str = setting("auto", one_of("auto", "l2", "decoupled"))
    no_decay_norm_bias: bool = False  # no weight decay on biases and normalisation parameters (1-D tensors)
    # parameter-name glob -> LR, e.g. {"fc*": 0.01}
    group_lr: dict[str, float] = setting(rule=each(above(0)), factory=dict)
    # muon: momentum of the orthogonalised filters and matrices (the rest: momentum)
    muon_momentum: float = setting(0.95, interval("[0, 1)"))
    # muon: Newton-Schulz iterations per orthogonalisation (airbench94_muon runs 3)
    muon_ns_steps: int = setting(5, count(1, 20))
    # parameter-name glob -> epochs: those parameters train only for that many epochs, their LR falling
    # linearly from its start to 0 over them (in place of the schedule), then they are frozen;
    # e.g. {"stem.bias": 3} for airbench's whitening bias
    group_epochs: dict[str, float] = setting(rule=each(interval(f"(0, {MAX_EPOCHS}]")), factory=dict)
    lookahead_k: int = setting(0, count(0, 1_000_000))  # Lookahead: sync slow weights every k steps; 0 disables
    lookahead_alpha: float = setting(0.5, interval("(0, 1]"))  # Lookahead slow-weight step size


@dataclass
class SchedConfig:
    # auto: plateau, or under the staged fine-tune recipe one-cycle restarting when the body unfreezes;
    # see `cnnlab.engine.schedulers.SCHEDULERS` (plateau, cosine, onecycle, step, ...)
    name: str = setting("auto", NONEMPTY, names="scheduler")
    monitor: str = setting("val_loss", one_of(*EPOCH_METRICS))  # metric watched by plateau
    factor: float = setting(0.5, interval("(0, 1)"))
    patience: int = setting(3, count(0, MAX_EPOCHS))
    min_lr: float = setting(1e-6, at_least(0))
    step_size: int = setting(10, count(1, MAX_EPOCHS))  # step: epochs between decays
    gamma: float = setting(0.1, above(0))  # step / multistep / exponential: LR factor (exponential: per epoch)
    # multistep: epochs where LR *= gamma
    milestones: list[int] = setting(rule=each(count(0, MAX_EPOCHS)), factory=lambda: [30, 60, 90])
    power: float = setting(1.0, at_least(0))  # polynomial decay exponent (1 = linear)
    restart_epochs: int = setting(10, count(1, MAX_EPOCHS))  # cosine_restarts: length of the first cycle in epochs
    # cosine_restarts: each cycle is this many times longer than the previous
    restart_mult: int = setting(1, count(1, 100))
    base_lr: float = setting(1e-4, at_least(0))  # cyclic: lower LR bound (optim.lr is the upper bound)
    cycle_epochs: float = setting(2.0, above(0))  # cyclic: epochs per half cycle (rise or fall)
    # cyclic: triangular | triangular2 | exp_range
    cycle_mode: str = setting("triangular", one_of("triangular", "triangular2", "exp_range"))
    pct_start: float = setting(0.25, interval("(0, 1)"))  # onecycle: share of the steps spent rising
    div_factor: float = setting(25.0, above(0))  # onecycle: initial LR = optim.lr / div_factor
    final_div_factor: float = setting(1e4, above(0))  # onecycle: final LR = initial LR / final_div_factor
    # onecycle: epochs where a new cycle begins
    restarts: list[int] = setting(rule=each(count(0, MAX_EPOCHS)), factory=list)
    restart_peak: float = setting(0.5, above(0))  # onecycle: each later cycle peaks at this times the one before
    # linear warm-up before any schedule (fractions allowed)
    warmup_epochs: float = setting(0.0, interval(f"[0, {MAX_EPOCHS}]"))
    warmup_start: float = setting(0.0, UNIT)  # warm-up starts at this fraction of the LR


@dataclass
class TrainConfig:
    epochs: int = setting(8, count(1, MAX_EPOCHS, " (an untrained model is never saved)"))
    seed: int = setting(0, count(0, 2**32 - 1, " (NumPy takes 32-bit seeds)"))
    device: str = setting("auto", matches(r"auto|cpu|mps|cuda(:\d{1,3})?", "auto, cpu, mps, cuda or cuda:N"))
    # max global L2 norm (or max |g| with grad_clip_mode value); null disables
    grad_clip: float | None = setting(1.0, above(0, " (or null to disable clipping)"))
    grad_clip_mode: str = setting("norm", NONEMPTY, names="gradient clipping mode")  # norm | value
    loss: str = setting("cross_entropy", NONEMPTY, names="loss")  # cross_entropy | focal
    label_smoothing: float = setting(0.0, interval("[0, 1]", " (0.1 is typical)"))
    focal_gamma: float = setting(2.0, at_least(0))  # focal loss focusing strength
    focal_alpha: float | None = setting(None, UNIT)  # focal loss class-balance weight (null: none)
    l1: float = setting(0.0, at_least(0))  # L1 penalty coefficient added to the loss (sum |w| of weights)
    l2: float = setting(0.0, at_least(0))  # L2 penalty coefficient added to the loss (sum w^2 of weights; not decay)
    # default | he_normal | he_uniform | xavier_normal | xavier_uniform | lecun_* | zero
    init: str = setting("default", NONEMPTY, names="weight initialisation")
    amp: str = setting("none", one_of("none", "bf16", "fp16"))  # none | bf16 | fp16 (fp16 uses a gradient scaler)
    compile: bool = False  # torch.compile the model for training
    # gradient accumulation: optimiser step every N batches
    accumulate: int = setting(1, count(1, 1_000_000, " (one optimiser step per N batches)"))
    # EMA decay of the weights (e.g. 0.999); evaluation then uses the EMA weights; 0 disables
    ema: float = setting(0.0, interval("[0, 1)", " (0 disables; 0.999 is typical)"))
    # test-time augmentation at evaluation: none | flip | flip-translate | flip-translate1
    tta: str = setting("none", NONEMPTY, names="test-time augmentation")
    # skip up to this many steps with a NaN/Inf loss before stopping
    skip_nonfinite: int = setting(0, count(0, 1 << 40))
    # stop when the smoothed training loss exceeds this many times its lowest value so far (losses under
    # 0.01 count as 0.01); the last good checkpoint is kept; null disables
    divergence_factor: float | None = setting(100.0, above(1, " (or null to disable)"))
    # also save checkpoints/last.pt every N steps (mid-epoch resume); 0: per epoch
    checkpoint_every: int = setting(0, count(0, 1 << 40, " (0: per epoch)"))
    log_steps: bool = True  # write steps.csv (global step, epoch, lr, loss) into the run folder
    early_stop_metric: str = setting("val_acc", one_of(*VAL_METRICS))  # val_acc | val_loss | val_macro_f1
    early_stop_patience: int | None = setting(5, count(0, MAX_EPOCHS))  # null disables early stopping
    early_stop_min_delta: float = setting(0.0, at_least(0))
    channels_last: bool = True  # faster convolutions on CPU and GPU
    deterministic: bool = False
    threads: int | None = setting(None, count(0, 4096, " (0: torch's choice)"))  # torch CPU threads


@dataclass
class OutputConfig:
    root: str = setting("runs", NONEMPTY)  # run folders go under here
    # run folder name (default: <dataset>-<model>); a number is appended if taken
    name: str | None = setting(None, NONEMPTY)
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
RUNTIME_KEYS = ("output.progress", "train.device", "train.threads", "data.num_workers", "data.cache_mb")

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
        raise CnnlabError(f"config key {prefix.rstrip('.') or '<root>'!r} must be a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    for name in data:
        if name not in names:
            full = prefix + str(name)
            hint = did_you_mean(full, [prefix + n for n in names])
            raise CnnlabError(f"unknown config key {_show(full)}.{hint}")
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
    """Check ``value`` against annotation ``tp``; convert int->float and list->tuple where lossless.

    Numbers must be finite (NaN and infinity are refused for every key) and text may not hold a NUL
    character (no file name can)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: X's own message (it says why: "a finite number", ...)
            return coerce(value, options[0], key)
        for a in options:
            try:
                return coerce(value, a, key)
            except CnnlabError:
                continue
        raise CnnlabError(f"config key {key!r} expects {_type_name(tp)}, got {_show(value)}")
    if tp is Any:
        return value
    if origin in (tuple, list):
        return _coerce_list(value, tp, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise CnnlabError(f"config key {key!r} expects a mapping, got {_show(value)}")
        inner = args[1] if len(args) == 2 else Any
        return {k: coerce(v, inner, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is float:
        number = _float(value)
        if number is not None:
            if not math.isfinite(number):
                raise CnnlabError(f"config key {key!r} expects a finite number, got {_show(value)}")
            return number
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is str and isinstance(value, (str, PurePath)):
        if "\x00" in str(value):
            raise CnnlabError(f"config key {key!r} holds a NUL character, which no name or path can contain")
        return str(value)  # Path objects are welcome from Python
    raise CnnlabError(f"config key {key!r} expects {_type_name(tp)}, got {_show(value)} ({type(value).__name__})")


def _coerce_list(value: Any, tp: Any, key: str) -> list | tuple:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if not isinstance(value, (list, tuple)):
        raise CnnlabError(f"config key {key!r} expects a list ({_type_name(tp)}), got {_show(value)}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise CnnlabError(f"config key {key!r} expects {len(args)} values, got {len(value)}")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    inner = args[0] if args else Any
    items = [coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _float(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int past 1e308
            return math.inf
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string; it is a number here
    return None


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _show(value: Any, n: int = 60) -> str:
    """A value for an error message: its repr, shortened (a 10 MB string must not become the message)."""
    text = repr(value) if not isinstance(value, (dict, list)) or len(value) < 20 else f"<{type(value).__name__}>"
    return text if len(text) <= n else text[: n - 3] + "..."


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


def leaf_rules(cls: type = Config, prefix: str = "") -> dict[str, Rule | None]:
    """Every dotted leaf key with the rule its field declares (None: any value of its type)."""
    out: dict[str, Rule | None] = {}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            out.update(leaf_rules(hints[f.name], prefix + f.name + "."))
        else:
            out[prefix + f.name] = f.metadata.get("rule")
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
            raise CnnlabError(f"unknown config key {_show(key)}.{did_you_mean(str(key), leaves)}")
        if isinstance(value, str):
            value = _parse_scalar(value, leaves[key], key)
        section, _, name = key.rpartition(".")
        node = data
        for part in section.split("."):
            node = node[part]
        node[name] = value
    return check_ranges(from_dict(Config, data))


def check_ranges(cfg: Config) -> Config:
    """Refuse values of the right type that cannot train anything, before any data is read or any folder
    written: each field's declared rule (``setting(default, rule)``), then the rules between keys. Names
    looked up in a registry are checked by ``workflow.check_config``, which can import the registries."""
    _check_folds(cfg.data)  # first: its messages say more than the two keys' own ranges
    for section in fields(cfg):
        part = getattr(cfg, section.name)
        for f in fields(part):
            rule, value = f.metadata.get("rule"), getattr(part, f.name)
            failure = rule.check(value) if rule is not None and value is not None else None
            if failure:
                raise CnnlabError(f"{section.name}.{f.name} must be {failure}, got {_show(value)}")
    return cfg


def check_names(cfg: Config, lookups: dict[str, Callable[[Config, str], Any]]) -> None:
    """Look up every value marked ``names=KIND`` with ``lookups[KIND](cfg, value)``, which raises
    CnnlabError for an unknown name (the registry's 'Did you mean' and list of known names)."""
    for section in fields(cfg):
        part = getattr(cfg, section.name)
        for f in fields(part):
            kind = f.metadata.get("names")
            if kind:
                lookups[kind](cfg, getattr(part, f.name))


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


def _parse_scalar(text: str, tp: Any, key: str) -> Any:
    # Strings stay strings for str fields ("1e-3" must not become a float in a name field).
    if tp is str or tp == (str | None):
        return None if text.lower() in ("null", "none") and tp is not str else text
    try:
        return load_yaml(text, f"the value of {key}")
    except CnnlabError:
        return text  # not YAML: the type check then names the key and the value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply dotted overrides."""
    cfg = Config()
    if path is not None:
        cfg = from_dict(Config, read_yaml(path, "config file") or {})
    return apply_overrides(cfg, overrides or {})


def save_config(cfg: Config, path: str | Path) -> None:
    atomic.write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))  # a resume reads it back


def replace(cfg: Config, **sections: Any) -> Config:
    """``replace(cfg, train={"epochs": 3})`` -> new Config with those keys changed (validated)."""
    return apply_overrides(cfg, {f"{s}.{k}": v for s, kv in sections.items() for k, v in kv.items()})


__all__ = ["Config", "SHORT_KEYS", "load_config", "save_config", "apply_overrides", "leaf_fields", "replace"]
