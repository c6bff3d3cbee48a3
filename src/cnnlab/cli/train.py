"""``cnnlab train``: train a model and write a run folder (defaults: seed CNN on the bundled MNIST sample)."""

from __future__ import annotations

import os
import shlex
import sys

from cnnlab.cli._config_options import add_config_flags, overrides_from_args


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model and write a run folder",
        description="Train a model. With no arguments: the seed CNN on the bundled MNIST sample. "
        "Every config key is also a flag: --section.key VALUE (see --help).",
    )
    p.add_argument("--resume", metavar="RUN", help="continue the run in folder RUN from its last checkpoint")
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
    add_config_flags(p)
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


def run(args) -> int:
    from cnnlab.api import train
    from cnnlab.evaluation.metrics import format_report

    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:  # relaunch this command under torchrun
        from cnnlab.engine.distributed import launch

        rest = sys.argv[sys.argv.index("train") + 1 :] if "train" in sys.argv else []
        return launch(args.nproc, ["train", *_without_launch_flags(rest)], shlex.split(args.torchrun))
    overrides = overrides_from_args(args)
    result = train(args.config, overrides=overrides, resume=args.resume)  # resume: only runtime options may change
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
