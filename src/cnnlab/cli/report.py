"""``cnnlab report RUN``: the self-contained HTML report of a run (``RUN/report.html``)."""

from __future__ import annotations

from cnnlab.cli._options import add_device, add_output, run_path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write the HTML report of a run",
        description="Evaluate a run on its test split and write RUN/report.html: one file with config, data, "
        "curves, metrics, confusion matrix, worst predictions, calibration, ROC/PR and model summary "
        "(images inlined, no network needed).",
    )
    p.add_argument(
        "run",
        metavar="RUN",
        type=run_path,
        help="run folder written by cnnlab train (or demo:mnist, the trained model shipped with cnnlab)",
    )
    add_output(p, "the HTML file", "RUN/report.html")
    p.add_argument("--top", type=int, default=24, help="worst predictions to show (default 24)")
    add_device(p)
    p.add_argument("--open", action="store_true", help="open the report in the default web browser")
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.viz.report import write_report

    path = write_report(args.run, out=args.output, top=args.top, device=args.device)
    print(f"wrote {path}")
    if args.open:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
    return 0
