"""``cnnlab teach TOPIC``: print a worked example step by step and write its figure (PNG + JSON).

Topics come from the :mod:`cnnlab.teach` package: convolution (with stride, padding,
several channels, your own image and kernel) and pooling, activation functions, optimiser paths on
2-D surfaces and one optimiser step's moments, softmax with cross-entropy, 1x1-convolution savings,
parameter counts, receptive fields and batch norm. Each topic is one small function in a registry,
so adding a topic is one function plus a decorator. Every topic prints its numbers and writes a
PNG and a JSON with the same numbers into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.registry import Registry

TOPICS: Registry = Registry("teaching topic")
MAX_IMAGE_SIDE = 32  # a photo is shrunk to this many pixels on its long side, so every window can be printed


def _matrix(text: str, what: str) -> np.ndarray:
    """Parse a JSON matrix such as '[[1,0],[0,1]]' (2-D, or 3-D for one slice per channel)."""
    try:
        m = np.asarray(json.loads(text), dtype=float)
    except (ValueError, TypeError) as exc:
        example = "'[[1,0,-1],[1,0,-1],[1,0,-1]]'"
        raise CnnlabError(f"{what} must be a matrix like {example}, got {text!r} ({exc})") from None
    if m.ndim not in (2, 3) or min(m.shape) == 0:
        raise CnnlabError(f"{what} must be 2-D (H x W) or 3-D (C x H x W), got shape {m.shape}")
    return m


def _image(arg: str, channels: int) -> np.ndarray:
    """``--image``: a matrix literal, or an image file read as 0..255 values, (C, H, W), shrunk to
    at most ``MAX_IMAGE_SIDE`` pixels on its long side."""
    if arg.lstrip().startswith("["):
        return _matrix(arg, "--image")
    from PIL import Image

    from cnnlab.data.images import load_image

    if not Path(arg).is_file():
        raise CnnlabError(f"--image {arg}: no such file (give an image file or a matrix like '[[0,1],[1,0]]')")
    pixels = np.round(load_image(arg, channels) * 255).astype(np.uint8)  # (H, W, C)
    h, w = pixels.shape[:2]
    scale = MAX_IMAGE_SIDE / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        pixels = np.stack([np.asarray(Image.fromarray(pixels[..., c]).resize(size, Image.BILINEAR))
                           for c in range(pixels.shape[-1])], axis=-1)  # fmt: skip
    return pixels.transpose(2, 0, 1).astype(float)  # (C, H, W)


def _channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Make an example image have ``channels`` channels: channel c is the image turned c quarter-turns."""
    if image.ndim == 3:
        return image
    if channels == 1:
        return image
    if image.shape[0] != image.shape[1]:
        raise CnnlabError("--channels on a built-in example needs a square image; pass --image with your own")
    return np.stack([np.rot90(image, c) for c in range(channels)])  # (C, H, W)


@TOPICS.register("conv")
def _conv(args):
    from cnnlab.teach.base import _pick
    from cnnlab.teach.conv import CONV_EXAMPLES, conv_example, conv_example_text

    name = args.example or "binary"
    options = {"out_dir": args.out, "stride": args.stride, "padding": args.padding}
    if args.image is None and args.kernel is None and args.channels == 1:
        r = conv_example(name, **options)
        return r, conv_example_text(r)
    # your own image and/or kernel, or several channels: the file name says so (built-ins stay untouched)
    ex = _pick(CONV_EXAMPLES, name, "convolution") if args.image is None or args.kernel is None else {}
    image = _image(args.image, args.channels) if args.image is not None else np.asarray(ex["image"], dtype=float)
    image = _channels(image, args.channels)
    kernel = _matrix(args.kernel, "--kernel") if args.kernel is not None else np.asarray(ex["kernel"], dtype=float)
    c = image.shape[0] if image.ndim == 3 else 1
    if c > 1 and kernel.ndim == 2:
        kernel = np.stack([kernel] * c)  # the same slice for every channel
    source = "image" if args.image is not None else name
    file_name = f"{source}{'_kernel' if args.kernel is not None else ''}_c{c}"
    r = conv_example(file_name, image=image, kernel=kernel, **options)
    return r, conv_example_text(r)


@TOPICS.register("pool")
def _pool(args):
    from cnnlab.teach.conv import pool_example, pool_example_text

    r = pool_example(args.example or "mixed", out_dir=args.out)
    return r, pool_example_text(r)


@TOPICS.register("activations")
def _activations(args):
    from cnnlab.teach.activations import activation_plots, activation_text

    r = activation_plots([args.example] if args.example else None, out_dir=args.out)
    return r, activation_text(r)


@TOPICS.register("optimizers")
def _optimizers(args):
    from cnnlab.teach.optim import optimizer_paths, optimizer_paths_text

    if args.step:
        from cnnlab.teach.adam import adam_steps, adam_steps_text

        r = adam_steps(args.example or "quadratic", out_dir=args.out)
        return r, adam_steps_text(r)
    if args.engine:
        from cnnlab.teach.optim_engine import engine_optimizers_example, engine_optimizers_text

        r = engine_optimizers_example(args.example or "quadratic", out_dir=args.out)
        return r, engine_optimizers_text(r)
    r = optimizer_paths([args.example] if args.example else None, out_dir=args.out, seed=args.seed)
    return r, optimizer_paths_text(r)


@TOPICS.register("softmax")
def _softmax(args):
    from cnnlab.teach.numbers import softmax_example, softmax_text

    try:
        logits = [float(x) for x in args.example.split(",")] if args.example else None
    except ValueError:
        msg = f"softmax: give logits as comma-separated numbers like 2.5,1.0,0.1, got {args.example!r}"
        raise CnnlabError(msg) from None
    r = softmax_example(logits, out_dir=args.out)
    return r, softmax_text(r)


@TOPICS.register("onebyone")
def _onebyone(args):
    from cnnlab.teach.numbers import onebyone_example, onebyone_text

    r = onebyone_example(out_dir=args.out)
    return r, onebyone_text(r)


@TOPICS.register("params")
def _params(args):
    from cnnlab.teach.numbers import params_examples, params_figure, params_text

    r = params_figure(params_examples(), out_dir=args.out)
    return r, params_text(r)


@TOPICS.register("rf")
def _rf(args):
    from cnnlab.teach.rf import SEED_CNN_LAYERS, receptive_field_example, receptive_field_text

    r = receptive_field_example(args.example or SEED_CNN_LAYERS, out_dir=args.out)
    return r, receptive_field_text(r)


@TOPICS.register("batchnorm")
def _batchnorm(args):
    from cnnlab.teach.numbers import batchnorm_example, batchnorm_text

    r = batchnorm_example(seed=args.seed, out_dir=args.out)
    return r, batchnorm_text(r)


@TOPICS.register("backprop")
def _backprop(args):
    from cnnlab.teach.backprop import backprop_example, backprop_text

    r = backprop_example(out_dir=args.out)
    return r, backprop_text(r)


@TOPICS.register("schedules")
def _schedules(args):
    from cnnlab.teach.schedules import schedules_example, schedules_text

    r = schedules_example(args.example.split(",") if args.example else None, out_dir=args.out)
    return r, schedules_text(r)


@TOPICS.register("init")
def _init(args):
    from cnnlab.teach.initialisation import init_example, init_text

    r = init_example(args.example.split(",") if args.example else None, out_dir=args.out, seed=args.seed)
    return r, init_text(r)


@TOPICS.register("arch")
def _arch(args):
    from cnnlab.teach.arch import arch_example, arch_names, arch_text

    if not args.example:
        raise CnnlabError(f"teach arch needs a name: {', '.join(arch_names())} (e.g. cnnlab teach arch resnet)")
    r = arch_example(args.example, out_dir=args.out)
    return r, arch_text(r)


@TOPICS.register("norms")
def _norms(args):
    from cnnlab.teach.norms import norms_example, norms_text

    r = norms_example(out_dir=args.out, seed=args.seed)
    return r, norms_text(r)


@TOPICS.register("metrics")
def _metrics(args):
    from cnnlab.teach.metrics import metrics_example, metrics_text

    r = metrics_example(out_dir=args.out)
    return r, metrics_text(r)


@TOPICS.register("transfer")
def _transfer(args):
    from cnnlab.teach.transfer import transfer_example, transfer_text

    r = transfer_example(args.example or "resnet18_cifar", out_dir=args.out)
    return r, transfer_text(r)


EXAMPLE_HELP = (
    "which example: conv: binary | edge | patch | numbers; pool: sequence | mixed; activations: one name "
    "(relu, swish, gelu, ...); optimizers: quadratic | saddle | himmelblau | wells; softmax: logits like "
    "2.5,1.0,0.1; rf: layers like conv3,pool2,conv3; schedules: names like cosine,onecycle; init: schemes like "
    "zero,he_normal; transfer: a zoo model (resnet18_cifar); errata: a seed number (000 ... 004); "
    "arch: lenet | alexnet | vgg | googlenet | resnet | densenet | mobilenet | se | efficientnet"
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "teach",
        help="worked examples: " + ", ".join(TOPICS.names()),
        description="Print a worked example step by step and write its figure (PNG) and numbers (JSON).",
    )
    p.add_argument("topic", choices=TOPICS.names(), help="what to show")
    p.add_argument("example", nargs="?", help=EXAMPLE_HELP)
    p.add_argument("--out", type=Path, default=Path("teach"), help="folder for the PNG and JSON (default ./teach)")
    p.add_argument("--seed", type=int, default=0, help="seed of the SGD noise and the dropout mask")
    g = p.add_argument_group("conv")
    g.add_argument("--stride", type=int, default=1, help="conv: stride (default 1)")
    g.add_argument("--padding", type=int, default=0, help="conv: zero padding on each side (default 0)")
    g.add_argument("--channels", type=int, default=1, help="conv: input channels (3 reads --image as RGB)")
    g.add_argument("--image", help="conv: an image file (shrunk to 32 px) or a matrix like '[[0,1],[1,0]]'")
    g.add_argument("--kernel", help="conv: a filter like '[[-1,0,1],[-1,0,1],[-1,0,1]]' (3-D: one per channel)")
    p.add_argument("--step", action="store_true", help="optimizers: one Adam step at a time, with its moments")
    p.add_argument(
        "--engine", action="store_true", help="optimizers: the training engine's optimisers (AdaGrad ... LAMB)"
    )
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    for flag in ("stride", "channels"):
        if getattr(args, flag) < 1:
            raise CnnlabError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.padding < 0:
        raise CnnlabError(f"--padding must be 0 or more, got {args.padding}")


@TOPICS.register("why-cnn")
def _why_cnn(args):
    from cnnlab.teach.why_cnn import why_cnn_example, why_cnn_text

    r = why_cnn_example(out_dir=args.out)
    return r, why_cnn_text(r)


@TOPICS.register("diagnose")
def _diagnose(args):
    from cnnlab.teach.diagnose import diagnose_example, diagnose_text

    r = diagnose_example(out_dir=args.out)
    return r, diagnose_text(r)


@TOPICS.register("roc")
def _roc(args):
    from cnnlab.teach.roc import roc_example, roc_text

    r = roc_example(out_dir=args.out)
    return r, roc_text(r)


@TOPICS.register("errata")
def _errata(args):
    from cnnlab.teach.errata import errata_text

    return None, errata_text(args.example)


def _command_key(args: argparse.Namespace) -> str:
    """How docs/seed-errata.md names this command (``teach arch resnet``, ``teach optimizers --step``)."""
    flags = [f" --{f}" for f in ("step", "engine") if getattr(args, f)]
    return f"teach {args.topic}" + (f" {args.example}" if args.example else "") + "".join(flags)


def run(args: argparse.Namespace) -> int:
    _check(args)
    result, text = TOPICS.get(args.topic)(args)
    if args.topic != "errata":
        from cnnlab.teach.errata import corrections_for

        if lines := corrections_for(_command_key(args), already=text):
            text = "\n".join([text, "", *lines])
    print(text)
    if result is not None and result.png is not None:
        w, h = result.size_px
        panels = f"{result.panels} panel" + ("s" if result.panels != 1 else "")
        print(f"\nwrote {result.png} and {result.json} ({panels}, {w}x{h} px)")
    return 0
