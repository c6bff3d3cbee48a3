"""Fine-tuning a pretrained network as part of a training run (seed 002, "Transfer Learning").

With ``--pretrained`` and nothing else said, ``cnnlab train`` follows the fine-tune recipe
(``model.finetune: staged``, what fastai's ``fine_tune`` does):

1. the weights' own image size and normalisation (published weights: their transform; a cnnlab run
   or model folder: its input size, mean and std), unless ``data.image_size`` is given;
2. ``model.head_epochs`` (1) epochs training only the new head, the body frozen (its BatchNorm
   statistics too), under a one-cycle schedule peaking at the learning rate;
3. the remaining epochs training everything under a second one-cycle peaking at half that rate, each
   block below the head at ``model.lr_decay`` times the rate of the block above (default: the factor
   that gives the lowest block 1/100 of the head's rate);
4. the learning rate from the LR finder, run on the frozen network, when ``optim.lr`` is not given
   (printed with its reason).

Every piece can be set by hand; the run's ``config.yaml`` records the resolved values, so
``--resume`` repeats the run exactly. The keys:

- ``model.pretrained``: ``imagenet`` (published weights, ``model.weights`` for a named set; see
  ``models.weights``), a local weights file (torchvision ``.pth``, ``.safetensors``) or a cnnlab
  model/run folder. The classifier head is always left fresh, sized for the new classes; a
  1-channel <-> 3-channel first conv is adapted (``models.transfer.adapt_conv_weight``).
- ``model.finetune``: ``auto`` (``staged`` with pretrained weights, else ``finetune_all``) |
  ``staged`` | ``finetune_all`` | ``feature_extraction`` (head only) | ``finetune_top``
  (``model.finetune_blocks`` top blocks + head) | ``progressive`` (``model.unfreeze_schedule``,
  e.g. ``"0:0,3:1,6:all"``: from epoch 0 the head, from epoch 3 one more block, from 6 all).
- ``model.lr_decay`` < 1: discriminative learning rates, the head at ``optim.lr`` and each block
  below ``lr_decay`` times the one above (turned into ``optim.group_lr`` patterns).

Batch-norm layers whose parameters are all frozen stay in eval mode during training, so their
running statistics (learnt on the pretraining data) are not overwritten by the new data.
"""

from __future__ import annotations

import types
from dataclasses import replace

from torch import nn

from cnnlab.config import DEFAULT_LR, Config, OptimConfig
from cnnlab.config import replace as replace_keys
from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.models.transfer import (
    STRATEGIES,
    apply_strategy,
    load_pretrained,
    lr_by_parameter,
    model_blocks,
    parse_schedule,
    unfreeze_for_epoch,
)
from cnnlab.models.weights import PretrainedWeights, resolve_pretrained

STAGED = "staged"  # the fine-tune recipe
LOWEST_BLOCK_SHARE = 0.01  # staged: the lowest block's LR as a share of the head's (fastai's slice(lr/100, lr))


def resolve_recipe(cfg: Config, log=print) -> Config:
    """The config's ``auto`` values made concrete (all but the LR finder's rate, see :func:`complete_recipe`).

    ``model.finetune: auto`` -> ``staged`` with pretrained weights, else ``finetune_all``;
    ``sched.name: auto`` -> one-cycle restarting after the head epochs under ``staged``, else plateau;
    ``optim.lr: null`` -> 1e-3 unless the recipe's LR finder will choose it.
    """
    mc, sc = cfg.model, cfg.sched
    finetune = strategy_of(mc)
    known = ["auto", STAGED, *sorted(STRATEGIES.names())]
    if finetune not in known:
        raise CnnlabError(
            f"unknown model.finetune {finetune!r}.{did_you_mean(finetune, known)} Known: {', '.join(known)}"
        )
    staged = finetune == STAGED
    if staged and not (mc.pretrained or mc.weights):
        raise CnnlabError(
            "model.finetune=staged trains the new head of a pretrained network first; give --pretrained "
            "(imagenet, a weights file or a cnnlab run folder) or another --finetune"
        )
    head = min(mc.head_epochs, cfg.train.epochs - 1) if staged else mc.head_epochs
    if staged and head < mc.head_epochs:
        log(f"only {cfg.train.epochs} epoch(s): {head} with the body frozen (model.head_epochs {mc.head_epochs})")
    name, restarts = sc.name, list(sc.restarts)
    if name == "auto":
        name = "onecycle" if staged else "plateau"
        restarts = [head] if staged and head > 0 else restarts
    lr = cfg.optim.lr if cfg.optim.lr is not None or staged else DEFAULT_LR
    decay = mc.lr_decay if mc.lr_decay is not None or staged else 1.0
    return replace_keys(
        cfg,
        model={"finetune": finetune, "head_epochs": head, "lr_decay": decay},
        sched={"name": name, "restarts": restarts},
        optim={"lr": lr},
    )


def strategy_of(mc) -> str:
    """``model.finetune`` with ``auto`` resolved: the staged recipe for pretrained weights, else finetune_all."""
    if mc.finetune != "auto":
        return mc.finetune
    return STAGED if mc.pretrained or mc.weights else "finetune_all"


def complete_recipe(cfg: Config, model: nn.Module, find_lr, log=print) -> Config:
    """The staged recipe's last two values: ``model.lr_decay`` from the model's depth and ``optim.lr``
    from ``find_lr()`` (the LR finder on the frozen network) when not given; the plan is printed."""
    mc, blocks = cfg.model, len(model_blocks(model))
    decay = mc.lr_decay if mc.lr_decay is not None else LOWEST_BLOCK_SHARE ** (1 / max(1, blocks - 1))
    lr = cfg.optim.lr if cfg.optim.lr is not None else find_lr()
    rest = cfg.train.epochs - mc.head_epochs
    peak = lr * (cfg.sched.restart_peak if mc.head_epochs and cfg.sched.restarts else 1.0)
    log(
        f"fine-tune recipe: {mc.head_epochs} epoch(s) training only the new head at lr {lr:.2e} (body frozen), "
        f"then {rest} epoch(s) training all {blocks} blocks, the head at {peak:.2e} and each block below at "
        f"{decay:.2f}x the one above (lowest {peak * decay ** (blocks - 1):.1e}); schedule {cfg.sched.name}"
    )
    return replace_keys(cfg, model={"lr_decay": decay}, optim={"lr": lr})


def resolve_weights(cfg: Config, log=print) -> tuple[Config, PretrainedWeights | None]:
    """Fetch the weights ``cfg.model`` names (once; then cached) and adopt their image size.

    Returns the config to train with (``data.image_size`` set to the weights' crop size when it was
    unset) and the weights, whose ``preprocessing.stats(channels)`` is the run's normalisation.
    """
    mc = cfg.model
    weights = resolve_pretrained(
        mc.name, mc.pretrained, mc.weights, mirror=mc.weights_mirror, progress=cfg.output.progress
    )
    pre = weights.preprocessing if weights else None
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


def prepare_model(model: nn.Module, mc, log=print, weights: PretrainedWeights | None = None) -> list:
    """Load the pretrained weights (new head) and freeze what ``mc.finetune`` says; returns the callbacks
    that unfreeze blocks as epochs pass (staged, progressive)."""
    if weights is None and (mc.pretrained or mc.weights):
        weights = resolve_pretrained(mc.name, mc.pretrained, mc.weights, mirror=mc.weights_mirror)
    if weights is not None:
        info = load_pretrained(model, weights.path, exclude_head=True, hint=_mismatch_hint(mc, weights))
        adapted = f", first conv adapted ({', '.join(info['adapted'])})" if info["adapted"] else ""
        log(f"loaded {info['loaded']} pretrained tensors from {weights.source}; new head for this task{adapted}")
    fixed = [p for p in model.parameters() if not p.requires_grad]  # fixed by the architecture (airbench's stem)
    callbacks, strategy = [], strategy_of(mc)
    if strategy == STAGED:
        strategy = "progressive" if mc.head_epochs > 0 else "finetune_all"
    if strategy == "progressive":
        schedule = {0: 0, mc.head_epochs: "all"} if strategy_of(mc) == STAGED else parse_schedule(mc.unfreeze_schedule)
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


def with_lr_decay(optim: OptimConfig, model: nn.Module, lr_decay: float | None) -> OptimConfig:
    """Discriminative learning rates as ``optim.group_lr`` (exact parameter names: block names are
    labels, not name prefixes); unchanged when ``lr_decay`` is 1/None or group LRs are given."""
    if lr_decay is None or lr_decay >= 1.0 or optim.group_lr:
        return optim
    return replace(optim, group_lr=lr_by_parameter(model, optim.lr, lr_decay))


def _mismatch_hint(mc, weights: PretrainedWeights) -> str:
    """What to change on the command line when the weights do not fit the model built for this run."""
    pre = weights.preprocessing
    size = (
        f"these weights were trained on {pre.image_size}x{pre.image_size} images, so use --image-size "
        f"{pre.image_size} or leave --image-size out"
        if pre
        else "use the --image-size the weights were trained with"
    )
    return (
        "cnnlab replaces the last layer for the new classes itself, so a mismatch elsewhere means another "
        f"architecture (--model must be the one the weights come from; this run builds {mc.name}) or another "
        f"input size for a network whose layers depend on it: {size}"
    )


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
