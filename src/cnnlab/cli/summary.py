"""``cnnlab summary MODEL``: the per-layer table of a model (shapes, parameters, MACs, receptive field).

A thin wrapper over :func:`cnnlab.models.summary.summary`. ``MODEL`` is a registered name or the path of
a YAML custom-net spec (``configs/models/*.yaml``); the network is built on torch's meta device, so
even ImageNet-sized models summarise instantly without allocating their weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from cnnlab.errors import CnnlabError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "summary",
        help="per-layer table: output shape, parameters, MACs, receptive field, memory",
        description=(
            "Print a Keras-style summary of a model: per layer the output shape, parameters, MACs, "
            "receptive field and jump, and activation memory, with totals. MODEL is a registered name "
            "(see 'cnnlab models') or a YAML custom-net spec file."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="model name (e.g. seed_cnn, resnet18_cifar) or a YAML spec path")
    p.add_argument("--input", default=None, help="input shape CxHxW, e.g. 3x32x32 (default: the model's own)")
    p.add_argument("--classes", type=int, default=None, help="number of classes (default: the model's own)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    p.set_defaults(func=run)


def resolve_model(model: str) -> tuple[str, dict]:
    """A YAML/JSON spec path becomes (``custom``, {spec: path}); anything else is a registered name."""
    if model.endswith((".yaml", ".yml", ".json")):
        if not Path(model).is_file():
            raise CnnlabError(f"model spec file {model!r} not found; give a registered name or an existing YAML file.")
        return "custom", {"spec": model}
    return model, {}


def run(args) -> int:
    from cnnlab.models import MODELS
    from cnnlab.models.summary import parse_input_shape, summary

    name, kwargs = resolve_model(args.model)
    MODELS.get(name)  # unknown name -> CnnlabError with the nearest names
    shape = parse_input_shape(args.input) if args.input else None
    if args.classes is not None and args.classes < 1:
        raise CnnlabError(f"--classes must be a positive integer, got {args.classes}.")
    s = summary(name, shape, num_classes=args.classes, **kwargs)
    if args.model != name:
        s.model = f"{name} ({args.model})"
    print(json.dumps(s.to_dict(), indent=2) if args.json else s.table())
    return 0
