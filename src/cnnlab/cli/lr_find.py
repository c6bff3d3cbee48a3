"""``cnnlab lr-find``: the learning-rate range test on a training config; plot and suggestion."""

from __future__ import annotations

import argparse

from cnnlab.cli._options import add_output, add_set, parse_sets
from cnnlab.config import SHORT_KEYS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "lr-find",
        help="sweep the learning rate and suggest one",
        description="Train briefly while the LR grows exponentially from --start to --end, plot the smoothed "
        "loss against the LR and suggest the LR of steepest descent before divergence. The model is not "
        "saved; the same options as 'cnnlab train' choose data, model, optimiser and loss.",
    )
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument("--start", type=float, default=1e-7, help="first LR (default 1e-7)")
    p.add_argument("--end", type=float, default=10.0, help="last LR (default 10)")
    p.add_argument("--steps", type=int, default=100, help="number of batches (default 100)")
    add_output(p, "plot", "lr_find.png")
    for short, key in SHORT_KEYS.items():
        if short in ("download", "epochs", "out", "name"):
            continue
        p.add_argument("--" + short.replace("_", "-"), dest=f"cfg:{key}", default=argparse.SUPPRESS, metavar="VALUE")
    add_set(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.api import lr_find
    from cnnlab.viz.training_plots import plot_lr_find

    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:")}
    overrides.update(parse_sets(args.set))
    # the same steps as cnnlab train (cnnlab.api.lr_find): every flag means the same here
    result = lr_find(args.config, overrides, start=args.start, end=args.end, steps=args.steps)
    path = plot_lr_find(result, args.output or "lr_find.png")
    print(f"swept {len(result.lrs)} steps from {result.lrs[0]:.1e} to {result.lrs[-1]:.1e}")
    print(f"suggested learning rate: {result.suggestion:.2e}")
    print(f"why: {result.reason}")
    print(f"plot: {path}")
    return 0
