"""``cnnlab runs``: list finished run folders; ``cnnlab runs compare A B ...``: overlay curves, diff configs."""

from __future__ import annotations

from pathlib import Path

from cnnlab.cli._options import add_output, run_path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "runs",
        help="list runs (name, model, data, epochs, best val, test accuracy, time) or compare them",
        description="Without a subcommand: a table of the finished runs under --runs-root. "
        "'cnnlab runs compare A B ...' overlays their validation accuracy/loss and learning-rate curves "
        "in one PNG and prints the config keys and metrics that differ.",
    )
    p.add_argument(
        "--runs-root", "--root", dest="root", default="runs", help="folder that holds the run folders (default runs)"
    )
    sub2 = p.add_subparsers(dest="runs_command", metavar="{compare}")
    c = sub2.add_parser("compare", help="overlay curves of two or more runs and diff their configs")
    c.add_argument("runs", nargs="+", type=run_path, help="run folders (paths, names under --runs-root, or demo:mnist)")
    add_output(c, "the PNG of the curves", "<runs-root>/compare-<A>-<B>.png")
    c.add_argument(
        "--runs-root", "--root", dest="compare_root", help="where run names are looked up (as before 'compare')"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.runs.index import compare_runs, format_table, scan_runs

    root = Path(getattr(args, "compare_root", None) or args.root)
    if args.runs_command == "compare":
        paths = [_resolve(name, root) for name in args.runs]
        default = root / ("compare-" + "-".join(Path(p).name for p in paths)[:100] + ".png")
        out = Path(args.output) if args.output else default
        from cnnlab.viz.training_plots import plot_compare

        runs, report = compare_runs(paths)
        plot_compare(runs, out)
        print(report)
        print(f"\ncurves: {out}")
        return 0
    runs, notes = scan_runs(root)
    print(format_table(runs) if runs else f"no finished runs under {root}")
    for note in notes:
        print(f"note: {note}")
    return 0


def _resolve(name: str, root: Path) -> Path:
    path = Path(name)
    if (path / "config.yaml").is_file() or not (root / name).is_dir():
        return path  # read_run reports a missing folder clearly
    return root / name
