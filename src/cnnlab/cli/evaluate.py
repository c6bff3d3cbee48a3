"""``cnnlab evaluate RUN``: test metrics of a trained model, printed as a table and saved as JSON."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained model on a dataset split",
        description="Evaluate a run (or model folder). Without --data, the run's own test split.",
    )
    p.add_argument("run", metavar="RUN", help="run folder (or model folder) written by cnnlab train")
    p.add_argument("--data", help="dataset name or folder:PATH (default: the run's own)")
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--split", default="test", choices=["train", "test"], help="which split (default test)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from cnnlab.api import evaluate
    from cnnlab.evaluation.metrics import format_report

    m = evaluate(
        args.run,
        data=args.data,
        data_root=args.data_root,
        split=args.split,
        batch_size=args.batch_size,
        device=args.device,
    )
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    print(format_report(m))
    print("\nconfusion matrix (rows: true, columns: predicted)")
    for name, row in zip(m["classes"], m["confusion_matrix"]):
        print(f"{name[:12]:>12} " + " ".join(f"{v:5d}" for v in row))
    return 0
