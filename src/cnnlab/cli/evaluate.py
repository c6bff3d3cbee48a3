"""``cnnlab evaluate RUN``: test metrics of a trained model, printed as a table and saved as JSON."""

from __future__ import annotations

from cnnlab.cli._options import add_device, add_json, emit_json, run_path
from cnnlab.cli._text import shorten


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained model on a dataset split",
        description="Evaluate a run (or model folder). Without --data, the run's own test split.",
    )
    p.add_argument(
        "run",
        metavar="RUN",
        type=run_path,
        help="run folder (or model folder) written by cnnlab train, or demo:mnist (the model shipped with cnnlab)",
    )
    p.add_argument(
        "--data",
        help="dataset name, folder:PATH or csv:FILE (default: the run's own); a folder of class folders without "
        "train/ val/ test/ is scored whole, its classes matched to the model's by name",
    )
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="which split (default test)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument(
        "--tta",
        metavar="NAME",
        help="test-time augmentation: none, flip, flip-translate, flip-translate1 "
        "(default: the run's own train.tta, which its validation and test metrics used)",
    )
    p.add_argument(
        "--on-bad-image",
        choices=["fail", "skip"],
        default="fail",
        help="unreadable files in --data: fail (default) or skip them (listed in the output)",
    )
    add_device(p)
    add_json(p, "the metrics")
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.api import evaluate
    from cnnlab.evaluation.metrics import format_report

    m = evaluate(
        args.run,
        data=args.data,
        data_root=args.data_root,
        split=args.split,
        batch_size=args.batch_size,
        device=args.device,
        tta=args.tta,
        on_bad_image=args.on_bad_image,
    )
    if args.json:
        emit_json(args.json, m)
        return 0
    what = f"all {m['num_samples']} images" if m["split"] == "all" else f"the {m['split']} split"
    print(f"{what} of {m['data']}, test-time augmentation: {m['tta']}")
    for path, reason in m.get("skipped", []):
        print(f"left out {path}: {reason}")
    for line in m.get("warnings", []):
        print(f"warning: {line}")
    print(format_report(m))
    print()
    print(confusion_table(m["classes"], m["confusion_matrix"]))
    return 0


def confusion_table(classes: list[str], cm: list[list[int]]) -> str:
    """The confusion matrix as text: rows are true classes, columns predicted, both headed by
    class names (shortened with an ellipsis to fit; the column number says which is which)."""
    width = max(5, len(str(max((max(r) for r in cm), default=0))))
    short = [shorten(name, 12) for name in classes]
    lines = ["confusion matrix (rows: true class, columns: predicted class, numbered as the rows)"]
    lines.append(" " * 17 + " ".join(f"{f'[{j}]':>{width}}" for j in range(len(classes))))
    for i, (name, row) in enumerate(zip(short, cm)):
        lines.append(f"{f'[{i}]':>4} {name:>12} " + " ".join(f"{v:{width}d}" for v in row))
    return "\n".join(lines)
