"""``cnnlab train``: train a model and write a run folder (defaults: seed CNN on the bundled MNIST sample)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from cnnlab.cli._options import add_set, parse_sets
from cnnlab.config import SHORT_KEYS, leaf_fields

# short flag -> help text (the dotted key it sets is appended)
_SHORT_HELP = {
    "data": "dataset name or folder:PATH (cnnlab datasets lists them)",
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
    "finetune": "finetune_all, feature_extraction, finetune_top or progressive",
    "optimizer": "optimiser name (sgd, adam, adamw, rmsprop)",
    "lr": "learning rate",
    "weight_decay": "weight decay",
    "scheduler": "learning-rate schedule (plateau, cosine, step, onecycle, none)",
    "epochs": "number of epochs",
    "seed": "random seed (split, initialisation, shuffling, augmentation)",
    "device": "auto, cpu, cuda or cuda:N",
    "out": "folder that holds run folders",
    "name": "run folder name",
    "tensorboard": "log to TensorBoard (event files in RUN/tensorboard)",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model and write a run folder",
        description="Train a model. With no arguments: the seed CNN on the bundled MNIST sample. "
        "Every config key is also a flag: --section.key VALUE (see --help).",
    )
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in folder RUN from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_set(p)
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="train with N processes (DistributedDataParallel through torchrun; gloo on CPU, NCCL on GPU)",
    )
    p.add_argument(
        "--torchrun",
        default="",
        metavar="ARGS",
        help='extra torchrun arguments for several machines, e.g. "--nnodes 2 --node_rank 0 '
        '--rdzv_endpoint host:29500"',
    )
    for short, key in SHORT_KEYS.items():
        flag = "--" + short.replace("_", "-")
        if short in ("download", "tensorboard"):  # on/off switches
            p.add_argument(
                flag,
                dest=f"cfg:{key}",
                action="store_const",
                const="true",
                default=argparse.SUPPRESS,
                help=_SHORT_HELP.get(short, "see docs/training.md"),
            )
        else:
            p.add_argument(
                flag,
                dest=f"cfg:{key}",
                default=argparse.SUPPRESS,
                metavar="VALUE",
                help=f"{_SHORT_HELP.get(short, 'see docs/training.md')} ({key})",
            )
    group = p.add_argument_group("every config key (YAML section.key)")
    for key, tp in leaf_fields().items():
        group.add_argument(
            f"--{key}",
            dest=f"cfg:{key}",
            default=argparse.SUPPRESS,
            metavar="VALUE",
            help=str(getattr(tp, "__name__", tp)).replace("typing.", ""),
        )
    p.set_defaults(func=run)


def _without_launch_flags(argv: list[str]) -> list[str]:
    """The command line minus --nproc/--torchrun (and their values), for the relaunched workers."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--nproc", "--torchrun"):
            skip = True
        elif not a.startswith(("--nproc=", "--torchrun=")):
            out.append(a)
    return out


def overrides_from_args(args) -> dict[str, str]:
    """--section.key VALUE and short flags, then --set KEY=VALUE (the same keys, either spelling)."""
    flags = {k[len("cfg:") :]: v for k, v in vars(args).items() if k.startswith("cfg:")}
    return {**flags, **parse_sets(getattr(args, "set", []))}


def run(args) -> int:
    from cnnlab.api import train
    from cnnlab.errors import CnnlabError
    from cnnlab.evaluation.metrics import format_report

    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:  # relaunch this command under torchrun
        from cnnlab.engine.distributed import launch

        rest = sys.argv[sys.argv.index("train") + 1 :] if "train" in sys.argv else []
        return launch(args.nproc, ["train", *_without_launch_flags(rest)], shlex.split(args.torchrun))
    overrides = overrides_from_args(args)
    if args.no_progress:
        overrides["output.progress"] = "false"
    if args.resume and (overrides or args.config):
        raise CnnlabError("--resume continues a run with its saved config; drop the other options")
    result = train(args.config, overrides=overrides, resume=args.resume)
    if result.metrics:
        m = result.metrics
        print()
        print(format_report(m))
        print(
            f"\ntest accuracy {m['accuracy']:.4f}  "
            + (f"top-5 {m['top5_accuracy']:.4f}  " if "top5_accuracy" in m else "")
            + f"macro-F1 {m['macro']['f1']:.4f}  loss {m.get('loss', float('nan')):.4f}  "
            f"(best epoch {m['best_epoch']}, {m['train_seconds']:.1f}s)"
        )
    print(f"run folder: {result.run_dir}")
    return 0
