"""Fine-tuning a pretrained network as part of a training run (seed 002, "Transfer Learning").

``setup_finetune`` applies ``ModelConfig``'s transfer keys to a freshly built model:

- ``model.pretrained``: ``imagenet`` (published weights, ``model.weights`` for a named set; see
  ``models.weights``), a local weights file (torchvision ``.pth``, ``.safetensors``) or a cnnlab
  model/run folder. The classifier head is always left fresh, sized for the new classes; a
  1-channel <-> 3-channel first conv is adapted (``models.transfer.adapt_conv_weight``).
  :func:`resolve_weights` runs before the data is loaded: published weights bring their own image
  size (unless ``data.image_size`` is given) and mean/std.
- ``model.finetune``: ``finetune_all`` | ``feature_extraction`` (head only) | ``finetune_top``
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

from cnnlab.config import Config, OptimConfig
from cnnlab.models.transfer import apply_strategy, load_pretrained, lr_by_parameter, parse_schedule, unfreeze_for_epoch
from cnnlab.models.weights import PretrainedWeights, resolve_pretrained


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


def setup_finetune(
    model: nn.Module, mc, optim: OptimConfig, log=print, weights: PretrainedWeights | None = None
) -> tuple[OptimConfig, list]:
    """Load weights and freeze per ``mc`` (a ModelConfig). Returns (optimiser config to use, callbacks).

    ``weights`` is what :func:`resolve_weights` found; without it ``mc.pretrained`` is resolved here.
    """
    callbacks = []
    if weights is None and (mc.pretrained or mc.weights):
        weights = resolve_pretrained(mc.name, mc.pretrained, mc.weights, mirror=mc.weights_mirror)
    if weights is not None:
        info = load_pretrained(model, weights.path, exclude_head=True)
        adapted = f", first conv adapted ({', '.join(info['adapted'])})" if info["adapted"] else ""
        log(f"loaded {info['loaded']} pretrained tensors from {weights.source}; new head for this task{adapted}")
    if mc.finetune == "progressive":
        schedule = parse_schedule(mc.unfreeze_schedule)
        trainable = unfreeze_for_epoch(model, 0, schedule)

        def unfreeze(trainer, row):  # after epoch e: set the blocks for the next epoch
            names = unfreeze_for_epoch(trainer.model, trainer.epoch, schedule)
            if trainer.epoch in schedule:
                log(f"unfreezing for epoch {trainer.epoch + 1}: training {len(names)} blocks")

        callbacks.append(unfreeze)
    else:
        trainable = apply_strategy(model, mc.finetune, n_blocks=mc.finetune_blocks)
    if weights is not None or mc.finetune != "finetune_all":
        total = sum(p.numel() for p in model.parameters())
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log(f"fine-tuning strategy {mc.finetune}: {n:,} of {total:,} parameters train ({len(trainable)} blocks)")
    keep_frozen_bn_in_eval(model)
    if mc.lr_decay < 1.0 and not optim.group_lr:
        # exact parameter names as patterns: block names are labels, not name prefixes
        optim = replace(optim, group_lr=lr_by_parameter(model, optim.lr, mc.lr_decay))
    return optim, callbacks


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
