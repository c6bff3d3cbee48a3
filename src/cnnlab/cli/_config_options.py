"""The config options of ``cnnlab train``, shared by every command that trains (``train``, ``cv``).

Every config key is a flag ``--section.key VALUE``; the short flags of ``config.SHORT_KEYS``
(``--epochs``, ``--data``, ...) set the same keys; ``--set KEY=VALUE`` too; ``--config FILE`` is the
YAML underneath them all.
"""

from __future__ import annotations

import argparse

from cnnlab.cli._options import add_set, parse_sets
from cnnlab.config import SHORT_KEYS, leaf_fields, leaf_rules

# short flag -> help text (the dotted key it sets is appended)
_SHORT_HELP = {
    "data": "dataset name, folder:PATH (class folders) or csv:FILE (a label CSV); cnnlab datasets lists them",
    "data_root": "folder holding the dataset files",
    "download": "download missing dataset files (checksums verified)",
    "batch_size": "training batch size",
    "augment": "augmentation preset (auto, none, flip, crop, crop-flip, seed)",
    "image_size": "resize images to this square side",
    "on_bad_image": "unreadable files in an image folder: fail (default) or skip them and report",
    "model": "registered model name (cnnlab models lists them)",
    "pretrained": "start from published weights (imagenet: downloaded once, hash-checked) or a local "
    ".pth/.safetensors file or a run or model folder of cnnlab",
    "weights": "a published weights set by name (IMAGENET1K_V2, DEFAULT; timm: a tag such as a1_in1k)",
    "weights_mirror": "folder or http(s) URL holding weight files under their own names",
    "finetune": "auto (staged with --pretrained, else finetune_all), staged (the fine-tune recipe: head first, "
    "then everything with discriminative rates), finetune_all, feature_extraction, finetune_top or progressive",
    "optimizer": "optimiser name (sgd, adam, adamw, rmsprop)",
    "lr": "learning rate (default 1e-3; under the fine-tune recipe 2e-3 for AdamW, the LR finder's for SGD)",
    "weight_decay": "weight decay",
    "scheduler": "learning-rate schedule (auto: plateau, or one-cycle per stage of the fine-tune recipe; cosine, "
    "step, onecycle, none, ...)",
    "epochs": "number of epochs",
    "seed": "random seed (split, initialisation, shuffling, augmentation)",
    "device": "auto, cpu, cuda or cuda:N",
    "out": "folder that holds run folders",
    "name": "run folder name",
    "tensorboard": "log to TensorBoard (event files in RUN/tensorboard)",
}


def add_config_flags(p) -> None:
    """--config, --no-progress, --set and a flag per config key (short ones first)."""
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_set(p)
    for short, key in SHORT_KEYS.items():
        flag = "--" + short.replace("_", "-")
        text = _SHORT_HELP.get(short, "see docs/training.md")
        if short in ("download", "tensorboard"):  # on/off switches
            p.add_argument(
                flag, dest=f"cfg:{key}", action="store_const", const="true", default=argparse.SUPPRESS, help=text
            )
        else:
            p.add_argument(flag, dest=f"cfg:{key}", default=argparse.SUPPRESS, metavar="VALUE", help=f"{text} ({key})")
    group = p.add_argument_group("every config key (YAML section.key)")
    rules = leaf_rules()
    for key, tp in leaf_fields().items():
        kind = str(getattr(tp, "__name__", tp)).replace("typing.", "")
        group.add_argument(
            f"--{key}",
            dest=f"cfg:{key}",
            default=argparse.SUPPRESS,
            metavar="VALUE",
            help=f"{kind}: {rules[key].text}" if rules[key] else kind,  # "float | None: > 0"
        )


def overrides_from_args(args) -> dict[str, str]:
    """--section.key VALUE and short flags, then --set KEY=VALUE (the same keys, either spelling); --no-progress."""
    flags = {k[len("cfg:") :]: v for k, v in vars(args).items() if k.startswith("cfg:")}
    out = {**flags, **parse_sets(getattr(args, "set", []))}
    if getattr(args, "no_progress", False):
        out["output.progress"] = "false"
    return out
