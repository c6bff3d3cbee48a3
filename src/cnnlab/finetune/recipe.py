"""Fine-tuning a pretrained network as part of a training run (seed 002, "Transfer Learning").

With ``--pretrained`` and nothing else said, ``cnnlab train`` follows the fine-tune recipe
(``model.finetune: staged``: fastai's ``fine_tune`` and the Keras transfer-learning guide, made to
hold on real ImageNet features and checked on held-out photos, issue 27):

1. the weights' own image size and normalisation (published weights: their transform; a cnnlab run
   or model folder: its architecture, input size, mean and std), unless given;
2. a new head, zero-initialised so it starts at chance (loss ln K) whatever the scale of the features,
   trained alone, the body frozen, for ``model.head_epochs`` (1) epoch under a one-cycle schedule
   peaking at the learning rate, with AdamW;
3. the remaining epochs training everything under a second one-cycle peaking at half that rate: the
   head at that peak and every block of the body at ``model.body_lr_share`` (0.1) of it
   (``model.lr_decay`` 1: rates decaying further towards the stem left the low layers behind);
4. BatchNorm running statistics kept from pretraining (eval mode; scale and shift still train) on
   fewer than 10,000 training images (``model.bn_stats``); on colour images, flips as the only
   augmentation (``data.augment``);
5. the learning rate, when ``optim.lr`` is not given: for AdamW and the other adaptive optimisers the
   head's rate of ``NEW_HEAD_LR`` (2e-3 for AdamW; Adam-type steps move each weight by about the rate,
   and every LR-finder sweep on real ImageNet features picked more), with no LR finder; for SGD and
   the rest the LR finder on the frozen network with its zero head: about one pass over the training
   images in 40-100 small batches, with a progress bar, the suggestion printed with its reason and
   held at the optimiser's ``HEAD_LR_CEILING`` where it has one;
6. the test and validation images scored in batches of 4x the training batch (``data.eval_batch_size``
   left at its default): a big pretrained network's activations then stay in the CPU's cache.

``model.head_init: fit`` is linear probing then fine-tuning (LP-FT, Kumar et al. 2022): the head is
the logistic regression on the frozen features, solved exactly before any step (``finetune.head``),
then every layer trains from it at one small rate (AdamW 1e-4, no head-only epoch, no LR finder). On
the held-out photos it ended about at the probe it starts from, below the zero head's recipe, so it is
an option, not the default.

:func:`resolve_recipe` is the one function that decides every ``auto``/null value and prints why.
Every piece can be set by hand; the run's ``config.yaml`` records the resolved values, so
``--resume`` repeats the run exactly. The keys:

- ``model.pretrained``: ``imagenet`` (published weights, ``model.weights`` for a named set; see
  ``finetune.weights``), a local weights file (torchvision ``.pth``, ``.safetensors``) or a cnnlab
  model/run folder. The classifier head is always left fresh, sized for the new classes; a
  1-channel <-> 3-channel first conv is adapted (``finetune.transfer.adapt_conv_weight``).
- ``model.finetune``: ``auto`` (``staged`` with pretrained weights, else ``finetune_all``) |
  ``staged`` | ``finetune_all`` | ``feature_extraction`` (head only) | ``finetune_top``
  (``model.finetune_blocks`` top blocks + head) | ``progressive`` (``model.unfreeze_schedule``,
  e.g. ``"0:0,3:1,6:all"``: from epoch 0 the head, from epoch 3 one more block, from 6 all).
- ``model.lr_decay`` < 1 and ``model.body_lr_share`` < 1: discriminative learning rates, the head at
  ``optim.lr``, the top block below at ``body_lr_share`` times that and each further block ``lr_decay``
  times the one above (turned into ``optim.group_lr`` patterns).

Batch-norm layers whose parameters are all frozen stay in eval mode during training, so their
running statistics (learnt on the pretraining data) are not overwritten by the new data.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from dataclasses import replace

from torch import nn

from cnnlab.config import DEFAULT_LR, Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from cnnlab.config import replace as replace_keys
from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.finetune.head import fit_head
from cnnlab.finetune.transfer import (
    STRATEGIES,
    apply_strategy,
    load_pretrained,
    lr_by_parameter,
    model_blocks,
    parse_schedule,
    unfreeze_for_epoch,
    zero_head,
)
from cnnlab.finetune.weights import PretrainedWeights, resolve_pretrained

STAGED = "staged"  # the fine-tune recipe
PROBE_STEPS = (40, 100)  # the recipe's LR finder: fewest and most steps
BODY_SHARE = 0.1  # staged: the top block below the head trains at this share of the head's LR
BN_SMALL_DATA = 10_000  # staged: fewer training images than this keep the pretrained BatchNorm statistics
BN_STATS = ("auto", "pretrained", "update")
# staged with a zero head and an adaptive optimiser: the head's peak rate, with no LR finder. Adam-type steps
# move each weight by about the rate whatever the gradient's scale, so the rate is the size of a step, and 2e-3
# is fastai's fine-tuning rate. The LR finder cannot improve on it on small data: a sweep of 40 small batches on
# a few hundred photos cannot tell a fast rate from a destructive one, and on a zero head over real ImageNet
# features its pick was above 2e-3 in every sweep recorded (EfficientNet-Lite0 on 356 photos, 96 px: 4.25e-3;
# the MNIST sample at 32 px: 0.18 and 0.71), where the head oscillates and the body, at a tenth of it, loses
# its features. Skipping it saves about one pass over the training images (2.0 s of a 32 s run, issue 27).
NEW_HEAD_LR = {"adam": 2e-3, "adamw": 2e-3, "nadam": 2e-3, "radam": 2e-3, "lamb": 2e-3, "rmsprop": 1e-3}
# staged with a zero head, the other optimisers: the LR finder's pick, held at most at this rate. Momentum
# SGD's steps scale with the gradient, so the finder's reading of the loss is what sets its rate.
HEAD_LR_CEILING = {"sgd": 0.05}
EVAL_BATCH_SHARE = 4  # staged: the eval batch, as a multiple of the training batch (left at its default)
# staged with a fitted head (LP-FT): the peak rate of every layer, per optimiser. AdamW's was chosen on held-out
# CIFAR-10 train photos (never the reported test photos; EfficientNet-Lite0, 360 photos, 3 epochs, seed 10): at
# 64 px 1e-4 and 3e-4 ended at 59.9 and 60.0 % (the probe: 52.4 %), at 96 px at 68.6 and 66.3 % (the probe:
# 67.9 %); 1e-3 pulled a head fitted to a training loss of 0.03 apart within an epoch (Adam moves each of its
# 1280 x K weights by about the rate a step). The other Adam variants share it; SGD's is the usual momentum
# fine-tuning rate (not measured here). Other optimisers: the LR finder.
FITTED_HEAD_LR = {"adam": 1e-4, "adamw": 1e-4, "nadam": 1e-4, "radam": 1e-4, "sgd": 0.01}
STEPS_PER_EPOCH, MIN_BATCH = 24, 16  # staged, batch size left at its default: at least ~24 steps an epoch


def strategy_of(mc) -> str:
    """``model.finetune`` with ``auto`` resolved: the staged recipe for pretrained weights, else finetune_all."""
    if mc.finetune == "auto":
        return STAGED if mc.pretrained or mc.weights else "finetune_all"
    known = ["auto", STAGED, *sorted(STRATEGIES.names())]
    if mc.finetune not in known:
        raise CnnlabError(
            f"unknown model.finetune {mc.finetune!r}.{did_you_mean(mc.finetune, known)} Known: {', '.join(known)}"
        )
    if mc.finetune == STAGED and not (mc.pretrained or mc.weights):
        raise CnnlabError(
            "model.finetune=staged trains the new head of a pretrained network first; give --pretrained "
            "(imagenet, a weights file or a cnnlab run folder) or another --finetune"
        )
    return mc.finetune


def head_init_of(mc) -> str:
    """``model.head_init`` with ``auto`` resolved: ``zero`` (``fit``, LP-FT, only when asked for: see below)."""
    if mc.head_init == "fit" and not (mc.pretrained or mc.weights):
        raise CnnlabError(
            "model.head_init=fit fits the new head on the features of a pretrained network; give --pretrained "
            "(imagenet, a weights file or a cnnlab run folder) or leave model.head_init at auto"
        )
    # on held-out photos (issue 27: EfficientNet-Lite0, 96 px, 360 CIFAR-10 photos, 3 epochs, seed 10) a zero
    # head trained alone for an epoch, then every layer, ended at 71.5 %; a fitted head (LP-FT) at 68.6 %, about
    # the probe's 67.9 %: fitted to a training loss of 0.03 on 1280 features of a few hundred photos, it leaves
    # fine-tuning nothing to learn from
    return "zero" if mc.head_init == "auto" else mc.head_init


def head_epochs_of(cfg: Config) -> int:
    """Epochs with the body frozen: ``model.head_epochs`` (null: none after a fitted head, else one), leaving
    at least one epoch for the whole network under the staged recipe."""
    head = cfg.model.head_epochs
    if head is None:
        head = 0 if head_init_of(cfg.model) == "fit" else 1
    return max(0, min(head, cfg.train.epochs - 1)) if strategy_of(cfg.model) == STAGED else head


def resolve_recipe(
    cfg: Config,
    model: nn.Module | None = None,
    *,
    find_lr: Callable[[nn.Module, OptimConfig], float] | None = None,
    n_train: int | None = None,
    channels: int | None = None,
    log: Callable[[str], None] = print,
) -> Config:
    """Every ``auto``/missing value of the training recipe made concrete, each printed with its reason.

    The one place these are decided (``config.yaml`` records the result, so ``--resume`` repeats it):

    - ``model.finetune: auto`` -> ``staged`` with pretrained weights, else ``finetune_all``;
    - ``model.head_init: auto`` -> ``zero`` (``fit``, LP-FT, when asked for);
    - ``model.head_epochs: null`` -> 0 after a fitted head, else 1; at most ``train.epochs - 1`` under ``staged``;
    - ``sched.name: auto`` -> one-cycle restarting when the body unfreezes under ``staged``, else plateau;
    - ``data.batch_size`` left at 128 -> under ``staged``, a power of two (16 or more) giving about 24
      steps an epoch on ``n_train`` images; ``data.eval_batch_size`` left at 1000 -> 4 training batches;
    - ``data.augment: auto`` -> under ``staged`` on colour images (``channels`` 3), ``flip``: a few epochs
      from features the head was fitted on unaugmented (the seed preset's rotations and colour jitter
      pull the fitted head off its features and cost the CPU more than the training step);
    - ``optim.name: auto`` -> AdamW under ``staged``, else Adam;
    - ``model.bn_stats: auto`` -> ``pretrained`` under ``staged`` with fewer than 10,000 training images
      (``n_train``), else ``update``;
    - ``model.body_lr_share: null`` -> 0.1 under ``staged`` with a zero head, else 1;
    - ``model.lr_decay: null`` -> 1: every block of the body at one rate;
    - ``optim.lr: null`` -> 1e-3; under ``staged`` with a fitted head the optimiser's ``FITTED_HEAD_LR``;
      under ``staged`` with a zero head the optimiser's ``NEW_HEAD_LR`` (AdamW and the other adaptive
      ones), else ``find_lr(model, optim)``: the LR finder on the frozen network, at most the
      optimiser's ``HEAD_LR_CEILING`` (needs ``model``; without ``find_lr`` 1e-3, for ``lr-find``
      which sweeps itself);
    - ``train.early_stop_metric`` left at ``val_acc`` -> ``val_loss`` under ``staged``: the best checkpoint by
      the validation loss, which a few validation photos tell apart where their accuracy ties.

    Training calls it twice: before the loaders with the dataset's size (``n_train``), then with the
    model; each call decides what it can and leaves the rest. Without ``model`` the values that depend on
    it stay null (``tune`` reads the rest).
    """
    staged = strategy_of(cfg.model) == STAGED
    chosen: dict[str, dict] = {"data": {}, "model": {}, "sched": {}, "optim": {}, "train": {}}
    why: list[str] = []

    def choose(key: str, value, reason: str) -> None:
        section, name = key.split(".")
        chosen[section][name] = value
        if reason:  # plain runs: the defaults go unannounced
            why.append(f"{key} {value:.3g} ({reason})" if isinstance(value, float) else f"{key} {value} ({reason})")

    for resolver in _RESOLVERS:
        resolver(cfg, staged, choose, model=model, find_lr=find_lr, n_train=n_train, channels=channels)
        cfg = replace_keys(cfg, **{k: v for k, v in chosen.items() if v})
    if why:
        log("chosen: " + "; ".join(why))
    return cfg


def _strategy(cfg: Config, staged: bool, choose, **_) -> None:
    mc = cfg.model
    if mc.finetune == "auto":
        choose("model.finetune", strategy_of(mc), "pretrained weights" if staged else "no pretrained weights")
    fit = head_init_of(mc) == "fit"
    if mc.head_init == "auto":
        reason = "trained alone first; model.head_init=fit fits it on the frozen features instead (LP-FT)"
        choose("model.head_init", head_init_of(mc), reason if staged else "")
    head = head_epochs_of(cfg)
    if head != mc.head_epochs:
        reasons = [(mc.head_epochs is not None, f"only {cfg.train.epochs} epoch(s): the last trains every layer")]
        reasons += [(fit, "the fitted head needs no head-only epoch"), (staged, "a new head"), (True, "")]
        choose("model.head_epochs", head, next(text for given, text in reasons if given))


def _schedule(cfg: Config, staged: bool, choose, **_) -> None:
    if cfg.sched.name != "auto":
        return
    head = head_epochs_of(cfg)
    if staged and head > 0:
        choose("sched.restarts", [head], "a new cycle when the body unfreezes")
    choose("sched.name", "onecycle" if staged else "plateau", "warm up, then anneal" if staged else "seed 000's")


def _batch(cfg: Config, staged: bool, choose, n_train=None, **_) -> None:
    """A small folder left at the default batch size would give the new head a handful of steps an
    epoch (600 photos: 5 of 128); under the recipe it gets about 24 or more. The scoring batch left at
    its default becomes ``EVAL_BATCH_SHARE`` training batches: a pretrained network's activations for
    1,000 images do not stay in a CPU's cache (EfficientNet-Lite0, 400 images of 96 px, one thread,
    ``benchmarks/finetune_parts.py``: 3.4-3.7 ms an image in batches of 32-64, 5.4-6.1 ms in one of 400;
    with BatchNorm folded 2.5-2.8 against 3.5-3.7 ms)."""
    if not staged or n_train is None:
        return
    batch = cfg.data.batch_size
    if batch == DataConfig.batch_size:
        batch = max(MIN_BATCH, min(batch, 1 << max(0, (n_train // STEPS_PER_EPOCH).bit_length() - 1)))
        if batch != cfg.data.batch_size:
            choose("data.batch_size", batch, f"about {n_train} training images: {-(-n_train // batch)} steps an epoch")
    scoring = EVAL_BATCH_SHARE * batch
    if cfg.data.eval_batch_size == DataConfig.eval_batch_size and scoring < cfg.data.eval_batch_size:
        choose("data.eval_batch_size", scoring, f"{EVAL_BATCH_SHARE} training batches: activations that stay in cache")


def _augment(cfg: Config, staged: bool, choose, channels=None, **_) -> None:
    if staged and cfg.data.augment == "auto" and channels == 3:
        choose("data.augment", "flip", "a short fine-tune of pretrained features: horizontal flips only")


def _optimiser(cfg: Config, staged: bool, choose, n_train=None, **_) -> None:
    if cfg.optim.name == "auto":
        choose("optim.name", "adamw" if staged else "adam", "decoupled weight decay" if staged else "seed 000's")
    if cfg.model.bn_stats == "auto":
        small = n_train is not None and n_train < BN_SMALL_DATA
        keep = staged and (small or n_train is None)
        reason = f"{n_train} training images" if n_train is not None else "fine-tuning"
        choose("model.bn_stats", "pretrained" if keep else "update", reason if staged else "training from scratch")
    elif cfg.model.bn_stats not in BN_STATS:
        raise CnnlabError(f"model.bn_stats must be one of {', '.join(BN_STATS)}, not {cfg.model.bn_stats!r}")
    fitted = staged and head_init_of(cfg.model) == "fit"
    if cfg.model.body_lr_share is None and staged:
        new = (BODY_SHARE, "a new head, a pretrained body")
        share, reason = (1.0, "LP-FT: the fitted head is not new, one rate for every layer") if fitted else new
        choose("model.body_lr_share", share, reason)
    if cfg.model.lr_decay is None and staged:
        # on held-out photos (issue 27, 64 px) rates decaying to 1/100 at the stem ended 5-6 points below one
        # rate for the whole body: upscaled photos need the low layers to adapt too
        choose("model.lr_decay", 1.0, "every block of the body at the same rate")


def _rates(cfg: Config, staged: bool, choose, model=None, find_lr=None, **_) -> None:
    mc = cfg.model
    if mc.lr_decay is None:  # staged runs have theirs from _optimiser
        choose("model.lr_decay", 1.0, "")
        mc = replace(cfg.model, lr_decay=1.0)
    if mc.body_lr_share is None and mc.lr_decay is not None:  # one factor all the way down
        choose("model.body_lr_share", mc.lr_decay, "")
    fitted = staged and head_init_of(mc) == "fit"
    if cfg.optim.lr is None and fitted and cfg.optim.name in FITTED_HEAD_LR:
        # no LR finder: it measures how fast a loss falls, and a fitted head's loss is already at its floor
        lr = FITTED_HEAD_LR[cfg.optim.name]
        choose("optim.lr", lr, f"{cfg.optim.name}'s rate for fine-tuning from a fitted head")
    elif cfg.optim.lr is None and staged and not fitted and cfg.optim.name in NEW_HEAD_LR:
        lr = NEW_HEAD_LR[cfg.optim.name]
        choose("optim.lr", lr, f"{cfg.optim.name}'s rate for a new head, no LR finder: 'cnnlab lr-find' sweeps it")
    elif cfg.optim.lr is None and (model is not None or not staged):
        found = staged and find_lr is not None
        lr, reason = (find_lr(model, cfg.optim), "the LR finder, above") if found else (DEFAULT_LR, "the default")
        ceiling = HEAD_LR_CEILING.get(cfg.optim.name, math.inf) if staged else math.inf
        if lr > ceiling:
            lr, reason = ceiling, f"the LR finder's {lr:.2e} held at {cfg.optim.name}'s fine-tuning ceiling"
        choose("optim.lr", lr, reason)


def _checkpoint(cfg: Config, staged: bool, choose, **_) -> None:
    """Under ``staged`` the best checkpoint (and early stopping) follows the validation loss, not the
    accuracy, when ``train.early_stop_metric`` is left at its default. A small folder's validation split
    (44 photos) moves its accuracy in steps of two points, and a tie keeps the earlier epoch: on held-out
    photos (issue 27, seeds 10-15) accuracy chose the head-only or the middle epoch in three runs of six,
    2.5, 10 and 5.8 points below the last, which the loss chose in all six (73.5 against 70.5 % on average)."""
    if staged and cfg.train.early_stop_metric == TrainConfig.early_stop_metric:
        reason = "a few validation photos tie on accuracy; the loss tells epochs apart"
        choose("train.early_stop_metric", "val_loss", reason)


_RESOLVERS = (_strategy, _schedule, _batch, _augment, _optimiser, _rates, _checkpoint)


def describe_recipe(cfg: Config, model: nn.Module, log=print) -> None:
    """The staged plan in one line: what trains when, at which rates."""
    mc, blocks = cfg.model, len(model_blocks(model))
    lr, decay, rest = cfg.optim.lr, mc.lr_decay, cfg.train.epochs - mc.head_epochs
    peak = lr * (cfg.sched.restart_peak if mc.head_epochs and cfg.sched.restarts else 1.0)
    top, lowest = peak * mc.body_lr_share, peak * mc.body_lr_share * decay ** max(0, blocks - 2)
    bn = "kept from pretraining" if mc.bn_stats == "pretrained" else "re-estimated on your images"
    first = "the new head fitted on the frozen features (above), " if mc.head_init == "fit" else ""
    if mc.head_epochs:
        first += f"{mc.head_epochs} epoch(s) training only the new head at lr {lr:.2e} (body frozen), "
    rates = f"every layer at {peak:.2e}"
    if decay == 1.0 and mc.body_lr_share != 1.0:
        rates = f"the head at {peak:.2e}, every block below it at {top:.1e}"
    elif (mc.body_lr_share, decay) != (1.0, 1.0):
        rates = (
            f"the head at {peak:.2e}, the top block below at {top:.1e} and each further one at {decay:.2f}x "
            f"the one above (lowest {lowest:.1e})"
        )
    log(
        f"fine-tune recipe: {first}then {rest} epoch(s) training all {blocks} blocks, {rates}; "
        f"{cfg.optim.name}, schedule {cfg.sched.name}; BatchNorm statistics {bn}"
    )


def prepare_head(model: nn.Module, cfg: Config, loader, log=print) -> None:
    """Under ``model.head_init: fit``, the new head set to the logistic regression on the frozen body's
    features of the training images (``finetune.head``: LP-FT); otherwise it stays as ``prepare_model`` left it."""
    if head_init_of(cfg.model) == "fit":
        fit_head(model, loader.unaugmented(), log)


def probe_batches(loader, size: int):
    """The loader's batches cut into pieces of ``size`` images (the LR finder's smaller probe batch)."""
    from cnnlab.engine.lr_find import closed_after

    with closed_after(loader) as batches:  # closing the probe closes the loader's iteration too
        for x, y in batches:
            for i in range(0, len(y), size):
                yield x[i : i + size], y[i : i + size]


def probe_plan(n_train: int, batch_size: int) -> tuple[int, int]:
    """(probe batch, steps) of the recipe's LR finder: about one pass over the training images, in
    20-100 steps of at most ``batch_size`` images, so a small folder costs seconds, not epochs."""
    batch = max(4, min(batch_size, n_train // PROBE_STEPS[0]))
    steps = max(PROBE_STEPS[0], min(PROBE_STEPS[1], n_train // batch))
    return batch, steps


def find_head_lr(model: nn.Module, loader, optim: OptimConfig, loss_fn, *, generators=(), log=print, progress=True):
    """The staged recipe's learning rate: the LR finder on the network as it starts (body frozen, new
    head), sweeping 1e-6 to 1 over a bounded number of small batches; every state is restored afterwards."""
    from cnnlab.engine.lr_find import lr_find
    from cnnlab.engine.optim import build_optimizer

    batch, steps = probe_plan(loader.num_samples, getattr(loader, "batch_size", 128))
    probe = build_optimizer(model, replace(optim, lr=DEFAULT_LR, group_lr={}))
    found = lr_find(
        model, _Batches(loader, batch), probe, loss_fn, 1e-6, 1.0, steps, beta=0.95,
        generators=list(generators), progress=progress,
    )  # fmt: skip
    log(
        f"learning rate {found.suggestion:.2e} from the LR finder ({len(found.lrs)} steps of {batch} images): "
        f"{found.reason}"
    )
    return found.suggestion


class _Batches:
    """A re-iterable view of ``loader`` in batches of ``size`` (the finder cycles through it)."""

    def __init__(self, loader, size: int):
        self.loader, self.size = loader, size

    def __iter__(self):
        return probe_batches(self.loader, self.size)

    def preserved(self):
        """The loader's own restore: the finder leaves it as it found it (see ``_EpochPlan.preserved``)."""
        from cnnlab.engine.lr_find import preserved

        return preserved(self.loader)


def resolve_weights(cfg: Config, log=print) -> tuple[Config, PretrainedWeights | None]:
    """Fetch the weights ``cfg.model`` names (once; then cached) and adopt what they bring.

    Returns the config to train with and the weights, whose ``preprocessing.stats(channels)`` is the
    run's normalisation: ``data.image_size`` becomes the weights' size when unset, and a cnnlab run or
    model folder brings its architecture (and builder arguments) when ``model.name`` is left at its default.
    """
    mc = cfg.model
    weights = resolve_pretrained(
        mc.name, mc.pretrained, mc.weights, mirror=mc.weights_mirror, progress=cfg.output.progress
    )
    if weights is None:
        return cfg, None
    if weights.architecture and weights.architecture != mc.name and mc.name == ModelConfig.name:
        cfg = replace_keys(cfg, model={"name": weights.architecture, "kwargs": {**weights.kwargs, **mc.kwargs}})
        log(f"model {weights.architecture}: the architecture of {weights.source} (--model names another)")
    pre = weights.preprocessing
    if pre is None:
        return cfg, weights
    if cfg.data.image_size is None:
        cfg = replace(cfg, data=replace(cfg.data, image_size=pre.image_size))
    log(
        f"pretrained weights {pre.weights} ({weights.path}): images {cfg.data.image_size}x{cfg.data.image_size}, "
        f"mean {[round(v, 3) for v in pre.mean]}, std {[round(v, 3) for v in pre.std]}"
    )
    return cfg, weights


def _refreeze(params: list) -> None:
    for p in params:
        p.requires_grad_(False)


def prepare_model(model: nn.Module, cfg: Config, log=print, weights: PretrainedWeights | None = None) -> list:
    """Load the pretrained weights (new head) and freeze what ``model.finetune`` says; returns the callbacks
    that unfreeze blocks as epochs pass (staged, progressive)."""
    mc = cfg.model
    if weights is None and (mc.pretrained or mc.weights):
        weights = resolve_pretrained(mc.name, mc.pretrained, mc.weights, mirror=mc.weights_mirror)
    if weights is not None:
        info = load_pretrained(model, weights.path, exclude_head=True, hint=_mismatch_hint(cfg, weights))
        zero_head(model)
        adapted = f", first conv adapted ({', '.join(info['adapted'])})" if info["adapted"] else ""
        fit = head_init_of(mc) == "fit"
        start = "fitted on the frozen features next" if fit else "zero-initialised (it starts at chance)"
        log(
            f"loaded {info['loaded']} pretrained tensors from {weights.source}; new head for this task, "
            f"{start}{adapted}"
        )
    fixed = [p for p in model.parameters() if not p.requires_grad]  # fixed by the architecture (airbench's stem)
    callbacks, strategy, head = [], strategy_of(mc), head_epochs_of(cfg)
    if strategy == STAGED:
        strategy = "progressive" if head > 0 else "finetune_all"
    if strategy == "progressive":
        schedule = {0: 0, head: "all"} if strategy_of(mc) == STAGED else parse_schedule(mc.unfreeze_schedule)
        trainable = unfreeze_for_epoch(model, 0, schedule)

        def unfreeze(trainer, row):  # after epoch e: set the blocks for the next epoch
            names = unfreeze_for_epoch(trainer.model, trainer.epoch, schedule)
            _refreeze(fixed)
            if trainer.epoch in schedule:
                log(f"unfreezing for epoch {trainer.epoch + 1}: training {len(names)} blocks")

        callbacks.append(unfreeze)
    else:
        trainable = apply_strategy(model, strategy, n_blocks=mc.finetune_blocks)
    _refreeze(fixed)  # no strategy unfreezes what the network itself keeps fixed
    if weights is not None or strategy_of(mc) != "finetune_all":
        total = sum(p.numel() for p in model.parameters())
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log(f"fine-tuning strategy {strategy_of(mc)}: {n:,} of {total:,} parameters train ({len(trainable)} blocks)")
    keep_frozen_bn_in_eval(model)
    return callbacks


def with_lr_decay(
    optim: OptimConfig, model: nn.Module, lr_decay: float | None, body_share: float | None = None
) -> OptimConfig:
    """Discriminative learning rates as ``optim.group_lr`` (exact parameter names: block names are
    labels, not name prefixes); unchanged when both factors are 1/None or group LRs are given."""
    decay = lr_decay or 1.0
    share = decay if body_share is None else body_share
    if (decay >= 1.0 and share >= 1.0) or optim.group_lr:
        return optim
    return replace(optim, group_lr=lr_by_parameter(model, optim.lr, min(decay, 1.0), min(share, 1.0)))


def _mismatch_hint(cfg: Config, weights: PretrainedWeights) -> str:
    """What to change on the command line when the weights do not fit the model built for this run."""
    pre, mc = weights.preprocessing, cfg.model
    if weights.architecture and weights.architecture != mc.name:
        return (
            f"{weights.source} holds a {weights.architecture} network and this run builds {mc.name}: leave --model "
            f"out (the run's own architecture is then built) or give --model {weights.architecture}"
        )
    size = ""
    if pre and cfg.data.image_size not in (None, pre.image_size):
        size = (
            f"; these weights were trained on {pre.image_size}x{pre.image_size} images and this run uses "
            f"{cfg.data.image_size}x{cfg.data.image_size}: leave --image-size out or give --image-size {pre.image_size}"
        )
    return (
        "cnnlab replaces the last layer for the new classes itself, so a mismatch elsewhere means another "
        f"architecture (--model must be the one the weights come from; this run builds {mc.name}) or another "
        f"input size for a network whose layers depend on it{size}"
    )


def keep_bn_statistics(model: nn.Module) -> None:
    """Keep every batch-norm layer's running statistics (eval mode) while its scale and shift train:
    on a small dataset, batch statistics of a few hundred images are a noisier estimate than the
    pretraining's, and re-estimating them shifts every feature the head learnt on."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train = types.MethodType(_always_eval, m)


def _always_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def keep_frozen_bn_in_eval(model: nn.Module) -> None:
    """Make every batch-norm layer stay in eval mode while all its parameters are frozen.

    ``model.train()`` calls ``train()`` on each submodule; the per-instance override below checks
    ``requires_grad`` at that moment, so layers unfrozen later (progressive) train normally again.
    It is a bound method, so ``copy.deepcopy`` (EMA copies) rebinds it to the copied layer.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            m.train = types.MethodType(_train_unless_frozen, m)


def _train_unless_frozen(self: nn.Module, mode: bool = True) -> nn.Module:
    frozen = not any(p.requires_grad for p in self.parameters())
    return nn.Module.train(self, mode and not frozen)
