"""``cnnlab teach TOPIC``: print a worked example step by step and write its figure (PNG + JSON).

Topics come from :mod:`cnnlab.viz.teaching` and its siblings: convolution and pooling on the
seeds' example matrices, activation functions, optimiser paths on 2-D surfaces, softmax with
cross-entropy, 1x1-convolution savings and parameter counts. Each topic is one small function in
a registry, so adding a topic is one function plus a decorator.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.registry import Registry

TOPICS: Registry = Registry("teaching topic")


@TOPICS.register("conv")
def _conv(args):
    from cnnlab.viz.teaching import conv_example, conv_example_text

    r = conv_example(args.example or "seed004", out_dir=args.out)
    return r, conv_example_text(r)


@TOPICS.register("pool")
def _pool(args):
    from cnnlab.viz.teaching import pool_example, pool_example_text

    r = pool_example(args.example or "seed002", out_dir=args.out)
    return r, pool_example_text(r)


@TOPICS.register("activations")
def _activations(args):
    from cnnlab.viz.teaching_activations import activation_plots, activation_text

    r = activation_plots([args.example] if args.example else None, out_dir=args.out)
    return r, activation_text(r)


@TOPICS.register("optimizers")
def _optimizers(args):
    from cnnlab.viz.teaching_optim import optimizer_paths, optimizer_paths_text

    r = optimizer_paths([args.example] if args.example else None, out_dir=args.out, seed=args.seed)
    return r, optimizer_paths_text(r)


@TOPICS.register("softmax")
def _softmax(args):
    from cnnlab.viz.teaching_numbers import softmax_example, softmax_text

    logits = [float(x) for x in args.example.split(",")] if args.example else None
    r = softmax_example(logits, out_dir=args.out)
    return r, softmax_text(r)


@TOPICS.register("onebyone")
def _onebyone(args):
    from cnnlab.viz.teaching_numbers import onebyone_example, onebyone_text

    r = onebyone_example(out_dir=args.out)
    return r, onebyone_text(r)


@TOPICS.register("params")
def _params(args):
    from cnnlab.viz.teaching_numbers import params_examples, params_text

    return None, params_text(params_examples())


@TOPICS.register("rf")
def _rf(args):
    from cnnlab.viz.teaching_rf import SEED_CNN_LAYERS, receptive_field_example, receptive_field_text

    r = receptive_field_example(args.example or SEED_CNN_LAYERS, out_dir=args.out)
    return r, receptive_field_text(r)


@TOPICS.register("batchnorm")
def _batchnorm(args):
    from cnnlab.viz.teaching_numbers import batchnorm_example, batchnorm_text

    return None, batchnorm_text(batchnorm_example(seed=args.seed))


EXAMPLE_HELP = (
    "which example: conv: seed004 | edge | patch; pool: seed001 | seed002; activations: one name "
    "(relu, gelu, ...); optimizers: quadratic | saddle | himmelblau | wells; softmax: logits like 2.5,1.0,0.1; "
    "rf: layers like conv3,pool2,conv3"
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "teach",
        help="worked examples: conv, pool, activations, optimizers, softmax, onebyone, params, rf, batchnorm",
        description="Print a worked example step by step and write its figure (PNG) and numbers (JSON).",
    )
    p.add_argument("topic", choices=TOPICS.names(), help="what to show")
    p.add_argument("example", nargs="?", help=EXAMPLE_HELP)
    p.add_argument("--out", type=Path, default=Path("teach"), help="folder for the PNG and JSON (default ./teach)")
    p.add_argument("--seed", type=int, default=0, help="seed of the SGD noise and the dropout mask")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result, text = TOPICS.get(args.topic)(args)
    print(text)
    if result is not None and result.png is not None:
        w, h = result.size_px
        print(f"\nwrote {result.png} and {result.json} ({result.panels} panels, {w}x{h} px)")
    return 0
