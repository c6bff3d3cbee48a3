"""``cnnlab cv``: stratified K-fold cross-validation; K ordinary runs and the mean ± std of their test metrics."""

from __future__ import annotations

import sys

from cnnlab.cli._config_options import add_config_flags, overrides_from_args
from cnnlab.cli._options import add_json, emit_json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "cv",
        help="stratified K-fold cross-validation: K runs and the mean ± std of their test metrics",
        description="Split the training data into K stratified folds (seeded; duplicates stay in one fold) and "
        "train K ordinary runs, fold k being the test split of run fold-k; the other folds train (validation "
        "carved from them as usual). Writes PARENT/fold-1 .. fold-K, cv.json and cv.md. The same command again "
        "skips finished folds and continues an interrupted one. Takes every option of 'cnnlab train'.",
    )
    p.add_argument("--folds", type=int, metavar="K", help="number of folds (default: data.folds of the config, else 5)")
    p.add_argument("--resume", metavar="PARENT", help="continue the cross-validation in folder PARENT")
    add_json(p, "the summary (cv.json)")
    add_config_flags(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.api import cv
    from cnnlab.crossval import format_summary
    from cnnlab.errors import CnnlabError

    overrides = overrides_from_args(args)
    if args.resume and args.folds is not None:
        raise CnnlabError("--resume continues a cross-validation with its saved config; drop --folds")
    to_stdout = args.json == "-"  # the JSON alone on stdout; progress goes to stderr
    log = (lambda line: print(line, file=sys.stderr)) if to_stdout else print
    result = cv(args.config, folds=args.folds, overrides=overrides, resume=args.resume, log=log)
    if args.json:
        emit_json(args.json, result.summary)
    if not to_stdout:
        print()
        print(format_summary(result.summary), end="")
        print(f"cross-validation folder: {result.parent}")
    return 0
