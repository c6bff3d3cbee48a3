"""``cnnlab scratch``: the from-scratch NumPy engine (no torch) - train a model or check its gradients.

``cnnlab scratch train --model lenet --data mnist-sample`` writes the same run folder as
``cnnlab train`` so the two engines can be compared side by side; ``cnnlab scratch gradcheck``
prints the finite-difference check of every layer and the loss (see docs/learn/backprop.md).
"""

from __future__ import annotations

import argparse

from cnnlab.errors import CnnlabError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "scratch",
        help="the from-scratch NumPy engine: train, gradcheck",
        description="A CNN engine written in NumPy alone (explicit forward/backward per layer), "
        "checked against finite differences and torch.",
    )
    actions = p.add_subparsers(dest="scratch_command", metavar="ACTION")

    t = actions.add_parser(
        "train",
        help="train a NumPy-engine model and write a run folder",
        description="Train a model of the NumPy engine (lenet, allconv) and write the same run folder as "
        "'cnnlab train': config.yaml, env.json, split.csv, data.json, history.csv, metrics.json, "
        "model/weights.npz + model/model.json. Example: cnnlab scratch train --data mnist --epochs 3",
    )
    from cnnlab.scratch import ScratchConfig

    d = ScratchConfig()
    t.add_argument("--model", default=d.model, help=f"lenet or allconv (default {d.model})")
    t.add_argument("--data", default=d.data, help=f"dataset name, e.g. mnist, cifar10 (default {d.data})")
    t.add_argument("--data-root", default=d.data_root, help="folder holding the dataset files")
    t.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    t.add_argument("--optimizer", default=d.optimizer, help="sgd, rmsprop, adam or adamw (default adam)")
    t.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr})")
    t.add_argument("--momentum", type=float, default=d.momentum, help=f"SGD momentum (default {d.momentum})")
    t.add_argument("--nesterov", action="store_true", help="Nesterov momentum (sgd)")
    t.add_argument("--weight-decay", type=float, default=d.weight_decay, help="L2 weight decay (default 0)")
    t.add_argument(
        "--val-fraction",
        type=float,
        default=d.val_fraction,
        help=f"validation share (default {d.val_fraction})",
    )
    t.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    t.add_argument("--threads", type=int, default=d.threads, help=f"BLAS threads (default {d.threads})")
    t.add_argument("--out", default=d.output_root, help=f"folder that holds run folders (default {d.output_root})")
    t.add_argument("--name", default=None, help="run folder name")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=run_train)

    g = actions.add_parser(
        "gradcheck",
        help="finite-difference check of every layer and the loss",
        description="Compare every layer's backward pass (and the loss's) with central differences in float64 "
        "on small odd shapes; exits 1 if any check fails. See docs/learn/backprop.md.",
    )
    g.add_argument("pattern", nargs="?", default="", help="only cases whose name contains this text")
    g.set_defaults(func=run_gradcheck)
    p.set_defaults(func=lambda args: _no_action(p))


def _no_action(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def run_train(args: argparse.Namespace) -> int:
    from cnnlab.numpy_engine.optim import OPTIMIZERS
    from cnnlab.scratch import ScratchConfig, fit

    OPTIMIZERS.get(args.optimizer)  # unknown names: CnnlabError with a suggestion
    if args.epochs < 1 or args.batch_size < 1:
        raise CnnlabError("--epochs and --batch-size must be at least 1")
    cfg = ScratchConfig(
        model=args.model,
        data=args.data,
        data_root=args.data_root,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        nesterov=args.nesterov,
        weight_decay=args.weight_decay,
        val_fraction=args.val_fraction,
        seed=args.seed,
        threads=args.threads,
        output_root=args.out,
        name=args.name,
        progress=not args.no_progress,
    )
    fit(cfg)
    return 0


def run_gradcheck(args: argparse.Namespace) -> int:
    from cnnlab.numpy_engine.gradcheck import ATOL, RTOL, run_all

    results = run_all(args.pattern)
    if not results:
        raise CnnlabError(f"no gradient-check case matches {args.pattern!r}; run without a pattern to see all")
    print(f"central differences in float64; pass: |analytic - numeric| <= {ATOL:g} + {RTOL:g} * |numeric|")
    for r in results:
        print(r.line())
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed}/{len(results)} passed")
    return 1 if failed else 0
