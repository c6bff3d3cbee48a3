"""``cnnlab models [PATTERN]``: list registered models with their input, parameters and MACs.

Each model is built on torch's meta device and run once through the summary hooks, so the whole zoo
(ImageNet-sized VGGs included) is listed in a few seconds without allocating weights. ``--markdown``
prints the table that ``docs/models.md`` pastes.
"""

from __future__ import annotations

from cnnlab.errors import CnnlabError, did_you_mean


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list registered models with parameters and MACs",
        description=(
            "List registered models (optionally those matching PATTERN, a glob or a substring) with "
            "their input shape, parameter count and multiply-accumulates per image."
        ),
    )
    p.add_argument("pattern", nargs="?", default="*", metavar="PATTERN", help="glob (resnet*) or substring (cifar)")
    p.add_argument("--input", default=None, help="input shape CxHxW for every model (default: each model's own)")
    p.add_argument("--classes", type=int, default=None, help="number of classes (default: each model's own)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (as in docs/models.md)")
    p.set_defaults(func=run)


def model_rows(pattern: str = "*", input_shape=None, num_classes: int | None = None) -> list[dict]:
    """One dict per matching model: name, input, params, macs, description, error (None when it built)."""
    from cnnlab.models import MODELS, list_models
    from cnnlab.models.summary import default_input_shape, summary

    glob = pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"
    names = list_models(glob)
    if not names:
        raise CnnlabError(f"no registered model matches {pattern!r}.{did_you_mean(pattern, list_models())}")
    rows = []
    for name in names:
        shape = tuple(input_shape or default_input_shape(name))
        doc = (MODELS.get(name).__doc__ or "").strip().splitlines()
        row = {"name": name, "input": "x".join(map(str, shape)), "params": None, "macs": None, "error": None}
        row["description"] = doc[0] if doc else ""
        try:
            s = summary(name, shape, num_classes=num_classes)
            row.update(params=s.total_params, macs=s.total_macs)
        except CnnlabError as exc:
            row["error"] = str(exc)
        rows.append(row)
    return rows


def _fmt(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _mmacs(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f}"


def run(args) -> int:
    from cnnlab.models.summary import parse_input_shape

    shape = parse_input_shape(args.input) if args.input else None
    rows = model_rows(args.pattern, shape, args.classes)
    if args.markdown:
        print("| model | input | parameters | MMACs | description |")
        print("|---|---|--:|--:|---|")
        for r in rows:
            desc = r["description"] if r["error"] is None else f"{r['description']} Not summarised: {r['error']}"
            print(f"| `{r['name']}` | {r['input']} | {_fmt(r['params'])} | {_mmacs(r['macs'])} | {desc} |")
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  {'input':>9}  {'parameters':>13}  {'MMACs':>10}")
    for r in rows:
        line = f"{r['name']:<{width}}  {r['input']:>9}  {_fmt(r['params']):>13}  {_mmacs(r['macs']):>10}"
        print(line if r["error"] is None else f"{line}  ({r['error']})")
    print(f"{len(rows)} model(s); MMACs = millions of multiply-accumulates per image.")
    return 0
