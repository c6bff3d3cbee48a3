"""``cnnlab models [PATTERN]``: list registered models with their input, parameters and MACs.

At each model's own input the rows come from ``models/zoo_table.json``, a table shipped with the
package (``python scripts/build_model_table.py`` writes it; a test rebuilds every row and compares),
so listing the zoo needs neither torch nor a forward pass: 0.3 s instead of the ~10 s that
summarising 60 models took. ``--classes K`` is read from the table too: a model's parameters and
MACs are affine in its class count (only the layers that output the classes grow), and the table
holds each model's own count and the growth per class, measured by building it at one class more
(a test checks every model at a third count). A model whose own input is not ``--input``, and every
``timm:`` name, is built and run once through the summary's shape-only pass, for its totals only (hooks on
the layers that carry MACs, no per-layer rows). ``--markdown`` prints the table that ``docs/models.md`` pastes.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from cnnlab.errors import CnnlabError, did_you_mean

TABLE = Path(__file__).resolve().parents[1] / "models" / "zoo_table.json"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list registered models with parameters and MACs",
        description=(
            "List registered models (optionally those matching PATTERN, a glob or a substring) with "
            "their input shape, parameter count and multiply-accumulates per image."
        ),
    )
    p.add_argument(
        "pattern",
        nargs="?",
        default="*",
        metavar="PATTERN",
        help="glob (resnet*) or substring (cifar); timm:GLOB lists timm's CNNs (pip install 'cnnlab[timm]')",
    )
    p.add_argument("--input", default=None, help="input shape CxHxW for every model (default: each model's own)")
    p.add_argument("--classes", type=int, default=None, help="number of classes (default: each model's own)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (as in docs/models.md)")
    p.set_defaults(func=run)


def _glob(pattern: str) -> str:
    """A glob as given (``resnet*``), or a substring (``cifar``) as the glob ``*cifar*``."""
    return pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"


def _no_match(pattern: str, known: list[str]) -> CnnlabError:
    timm = pattern.startswith("timm:")
    hint = "" if timm else did_you_mean(pattern, known) + " timm's CNNs: cnnlab models 'timm:*'."
    return CnnlabError(f"no {'timm' if timm else 'registered'} model matches {pattern!r}.{hint}")


def model_names(pattern: str = "*") -> list[str]:
    """Names matching ``pattern`` (a glob, or a substring); ``timm:PATTERN`` searches timm's CNNs."""
    from cnnlab.models import list_models

    prefix = "timm:" if pattern.startswith("timm:") else ""
    names = list_models(prefix + _glob(pattern.removeprefix(prefix)))
    if not names:
        raise _no_match(pattern, [] if prefix else list_models())
    return names


def table_rows(pattern: str = "*") -> list[dict]:
    """The shipped table's rows (each registered model at its own input and class count) matching
    ``pattern``, read without importing torch."""
    rows = json.loads(TABLE.read_text())["models"]
    found = [r for r in rows if fnmatch.fnmatchcase(r["name"], _glob(pattern))]
    if not found:
        raise _no_match(pattern, [r["name"] for r in rows])
    return found


def model_row(name: str, input_shape=None, num_classes: int | None = None) -> dict:
    """name, input, params, macs, description, error (None when it built) for one model, built now."""
    from cnnlab.models import MODELS
    from cnnlab.models.summary import default_input_shape, totals

    timm = name.startswith("timm:")
    if timm:
        from cnnlab.models.timm_models import timm_input_size

        size = timm_input_size(name.removeprefix("timm:"))
        shape, doc = tuple(input_shape or (3, size, size)), ["timm model (pip install 'cnnlab[timm]')"]
    else:
        shape = tuple(input_shape or default_input_shape(name))
        doc = (MODELS.get(name).__doc__ or "").strip().splitlines()
    row = {"name": name, "input": "x".join(map(str, shape)), "params": None, "macs": None, "error": None}
    row["description"] = doc[0] if doc else ""
    try:
        row["params"], row["macs"] = totals(name, shape, num_classes=num_classes)
    except CnnlabError as exc:
        row["error"] = str(exc)
    except Exception as exc:  # a third-party (timm) model that cannot be built or run shapes-only
        if not timm:
            raise
        row["error"] = f"not summarised: {type(exc).__name__}: {str(exc)[:80]}"
    return row


def model_rows(pattern: str = "*", input_shape=None, num_classes: int | None = None) -> list[dict]:
    """One dict per matching model (see :func:`model_row`), each built and summarised now."""
    return [model_row(name, input_shape, num_classes) for name in model_names(pattern)]


def zoo_table_row(name: str) -> dict:
    """A row of ``models/zoo_table.json``, built now: the registered model at its own input and class
    count, with that count (``classes``) and what one class more adds (``per_class``: params, macs)."""
    from cnnlab.models.summary import default_num_classes

    row = {**model_row(name), "classes": None, "per_class": None}
    if row["error"] is None:
        row["classes"] = k = default_num_classes(name)
        more = model_row(name, num_classes=k + 1)
        row["per_class"] = {"params": more["params"] - row["params"], "macs": more["macs"] - row["macs"]}
    return row


def at_classes(row: dict, num_classes: int) -> dict:
    """A table row moved to ``num_classes`` classes along its per-class growth (rows that failed stay)."""
    if row["error"] is not None:
        return row
    extra, grow = num_classes - row["classes"], row["per_class"]
    return {**row, "params": row["params"] + extra * grow["params"], "macs": row["macs"] + extra * grow["macs"]}


def _rows_or_names(pattern: str, input_shape, num_classes: int | None) -> list[dict | str]:
    """Each matching model as its shipped table row where the table holds the answer (a registered
    model at its own input, at any class count), else as its name, to build now (timm names, a model
    whose own input is not ``input_shape``)."""
    if pattern.startswith("timm:"):
        return model_names(pattern)
    size = None if input_shape is None else "x".join(map(str, input_shape))
    return [
        r["name"] if size not in (None, r["input"]) else r if num_classes is None else at_classes(r, num_classes)
        for r in table_rows(pattern)
    ]


def _fmt(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _mmacs(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f}"


def run(args) -> int:
    shape = None
    if args.classes is not None and args.classes < 1:
        raise CnnlabError(f"--classes must be a positive integer, got {args.classes}.")
    if args.input:
        from cnnlab.models.summary import parse_input_shape

        shape = parse_input_shape(args.input)
    models = _rows_or_names(args.pattern, shape, args.classes)
    if not args.markdown:  # one line per model as it is summarised (hundreds of timm models take minutes)
        return _print_table(models, shape, args.classes)
    print("| model | input | parameters | MMACs | description |")
    print("|---|---|--:|--:|---|")
    for r in (m if isinstance(m, dict) else model_row(m, shape, args.classes) for m in models):
        desc = r["description"] if r["error"] is None else f"{r['description']} Not summarised: {r['error']}"
        print(f"| `{r['name']}` | {r['input']} | {_fmt(r['params'])} | {_mmacs(r['macs'])} | {desc} |")
    return 0


def _print_table(models: list[dict | str], shape, classes: int | None) -> int:
    """One line per model: ``models`` are rows already known, or names to summarise one by one."""
    names = [m if isinstance(m, str) else m["name"] for m in models]
    width = max(len(n) for n in names)
    print(f"{'model':<{width}}  {'input':>9}  {'parameters':>13}  {'MMACs':>10}", flush=True)
    for m in models:
        r = model_row(m, shape, classes) if isinstance(m, str) else m
        line = f"{r['name']:<{width}}  {r['input']:>9}  {_fmt(r['params']):>13}  {_mmacs(r['macs']):>10}"
        print(line if r["error"] is None else f"{line}  ({r['error']})", flush=True)
    print(f"{len(names)} model(s); MMACs = millions of multiply-accumulates per image.")
    return 0
