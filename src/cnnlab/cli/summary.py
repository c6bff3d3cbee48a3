"""``cnnlab summary MODEL``: the per-layer table of a model (shapes, parameters, MACs, receptive field).

A thin wrapper over :func:`cnnlab.models.summary.summary`. ``MODEL`` is a registered name, the path of
a YAML custom-net spec (``configs/models/*.yaml``) or a trained model/run folder (its ``model.json``
gives architecture, input shape and classes). The network runs shapes only (built on torch's meta
device, its convolutions and linear layers as shape stand-ins), so even VGG-16 at 224 px summarises in
a tenth of a second over the imports. torchvision's networks at their own input (any class count) are
printed from the summaries shipped with the package (:mod:`cnnlab.summary_table`): building one imports
torchvision, and with it TorchDynamo, seconds more than the rest of the command.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.cli._options import add_json, emit_json, run_path
from cnnlab.errors import CnnlabError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "summary",
        help="per-layer table: output shape, parameters, MACs, receptive field, memory",
        description=(
            "Print a Keras-style summary of a model: per layer the output shape, parameters, MACs, "
            "receptive field and jump, and activation memory, with totals. MODEL is a registered name "
            "(see 'cnnlab models'), a YAML custom-net spec file, or a trained model/run folder."
        ),
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        type=run_path,
        help="model name (e.g. seed_cnn), a YAML spec, a run/model folder or demo:mnist",
    )
    p.add_argument("--input", default=None, help="input shape CxHxW, e.g. 3x32x32 (default: the model's own)")
    p.add_argument("--classes", type=int, default=None, help="number of classes (default: the model's own)")
    add_json(p, "the summary")
    p.set_defaults(func=run)


def resolve_model(model: str) -> tuple[str, dict, dict]:
    """MODEL -> (registered name, builder kwargs, defaults for input shape and classes).

    A YAML spec path becomes ``custom`` with ``spec``; a cnnlab model or run folder (``model.json``)
    gives its architecture, kwargs, input shape and class count; anything else is a registered name.
    """
    path = Path(model)
    if path.is_dir() or path.name == "model.json":
        from cnnlab.runs.model_file import read_meta

        meta = read_meta(path)
        defaults = {"input_shape": tuple(meta["input_shape"]), "num_classes": len(meta["classes"])}
        return meta["architecture"], dict(meta.get("kwargs", {})), defaults
    if model.endswith((".yaml", ".yml", ".json")):
        if not path.is_file():
            raise CnnlabError(f"model spec file {model!r} not found; give a registered name or an existing YAML file.")
        return "custom", {"spec": model}, {}
    return model, {}, {}


def run(args) -> int:
    from cnnlab.summary_table import parse_input_shape, shipped_summary

    name, kwargs, defaults = resolve_model(args.model)
    shape = parse_input_shape(args.input) if args.input else defaults.get("input_shape")
    if args.classes is not None and args.classes < 1:
        raise CnnlabError(f"--classes must be a positive integer, got {args.classes}.")
    classes = args.classes if args.classes is not None else defaults.get("num_classes")
    # torchvision's networks at their own input: the shipped summary, no torch imported
    s = None if kwargs else shipped_summary(name, shape, classes)
    if s is None:
        from cnnlab.models import MODELS
        from cnnlab.models.summary import summary

        MODELS.get(name)  # unknown name -> CnnlabError with the nearest names
        s = summary(name, shape, num_classes=classes, **kwargs)
    if args.model != name:
        from cnnlab.runs.builtin import display_name

        s.model = f"{name} ({display_name(args.model)})"
    if args.json:
        emit_json(args.json, s.to_dict())
    else:
        print(s.table())
        if args.model == name:  # a seed's own model at its own input size: where the seed counted otherwise
            from cnnlab.teach.errata import corrections_for

            size = "x".join(str(n) for n in s.input_shape[-3:])
            if lines := corrections_for(f"summary {name} --input {size}"):
                print("\n" + "\n".join(lines))
    return 0
