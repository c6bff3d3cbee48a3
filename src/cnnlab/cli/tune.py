"""``cnnlab tune``: hyperparameter search with Optuna (grid, random, TPE) over config keys; see docs/tuning.md."""

from __future__ import annotations

import argparse

from cnnlab.cli._options import add_set, parse_sets
from cnnlab.config import SHORT_KEYS

# short flags of cnnlab train that tune takes as they are (--epochs, --seed, --out are tune's own here)
_OWN = ("download", "epochs", "seed", "out", "name")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="search hyperparameters with Optuna (grid, random, Bayesian/TPE)",
        description="Run or continue an Optuna study: each trial trains with values drawn from a search space "
        "(YAML mapping dotted config keys to distributions; examples in configs/spaces/). Trials below the "
        "median at the same epoch are pruned. Writes best.yaml, trials.csv and plots into the study folder.",
    )
    p.add_argument("--config", help="base YAML config (default: the built-in defaults)")
    p.add_argument("--space", required=True, help="search space YAML (e.g. configs/spaces/lr_optimizer.yaml)")
    p.add_argument("--trials", type=int, default=20, help="finished trials wanted in total, earlier calls included")
    p.add_argument("--sampler", choices=["tpe", "random", "grid"], default="tpe", help="search method (default tpe)")
    p.add_argument("--storage", help="Optuna storage URL, e.g. sqlite:///runs/tune.db (default: STUDY_FOLDER/study.db)")
    p.add_argument("--study", help="study name (default <data>-<model>); same storage and name continue a study")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: the config's train.epochs)")
    p.add_argument("--metric", default="val_acc", help="history column to optimise (val_acc, val_loss, val_macro_f1)")
    p.add_argument("--pruner", choices=["median", "none"], default="median", help="stop poor trials early")
    p.add_argument("--pruner-startup", type=int, default=2, help="trials that finish before pruning starts")
    p.add_argument("--pruner-warmup", type=int, default=0, help="epochs every trial gets before it can be pruned")
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.add_argument("--out", help="study folder (default <output.root>/tune-<study>)")
    for short, key in SHORT_KEYS.items():  # --data, --model, --lr ... as in cnnlab train: the base config
        if short not in _OWN:
            p.add_argument(
                "--" + short.replace("_", "-"), dest=f"cfg:{key}", default=argparse.SUPPRESS, metavar="VALUE"
            )
    add_set(p)
    p.add_argument("--baseline", action="store_true", help="first trial uses the base config's own values")
    p.add_argument(
        "--keep-running",
        action="store_true",
        help="do not mark RUNNING trials as failed (when several processes share one study)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.errors import CnnlabError
    from cnnlab.tune import tune

    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:")}
    overrides.update(parse_sets(args.set))
    if args.trials < 1:
        raise CnnlabError(f"--trials {args.trials}: give at least 1")
    result = tune(
        args.config,
        args.space,
        trials=args.trials,
        sampler=args.sampler,
        storage=args.storage,
        study_name=args.study,
        metric=args.metric,
        epochs=args.epochs,
        pruner=args.pruner,
        pruner_startup=args.pruner_startup,
        pruner_warmup=args.pruner_warmup,
        seed=args.seed,
        overrides=overrides,
        out_dir=args.out,
        fail_running=not args.keep_running,
        baseline=args.baseline,
    )
    print(f"study folder: {result.out_dir}")
    return 0 if result.best_value is not None else 1
