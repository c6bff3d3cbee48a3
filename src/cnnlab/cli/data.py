"""``cnnlab data check PATH_OR_NAME``: the data doctor from the command line.

Parses the flags, runs :func:`cnnlab.data.doctor.check` on a folder (``folder:PATH`` or a plain
path) or a registered dataset name, prints the one-screen summary, optionally writes the JSON
report, and exits 1 when the doctor found errors (0 with warnings only), so scripts and CI can
gate training on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "data",
        help="inspect datasets: 'cnnlab data check PATH_OR_NAME'",
        description="Dataset tools. 'check' reports counts, unreadable files, duplicates/leakage and imbalance.",
    )
    sub = p.add_subparsers(dest="data_what", metavar="ACTION", required=True)
    c = sub.add_parser(
        "check",
        help="the data doctor: counts, modes, sizes, unreadable files, duplicates, leakage, imbalance",
        description="Check an image folder (PATH or folder:PATH, with train/ val/ test/ class folders or one "
        "folder of class folders), a label CSV (csv:FILE) or a dataset name (mnist-sample, cifar10, ...). Exit "
        "code 1 when errors are found (unreadable or missing files, train/test leakage, label conflicts, empty "
        "classes, class mismatch, unusable CSV rows), 0 with warnings only.",
    )
    c.add_argument("target", metavar="PATH_OR_NAME", help="folder path, folder:PATH, csv:FILE, or a dataset name")
    c.add_argument(
        "--json", nargs="?", const="-", metavar="FILE", help="the full report as JSON: printed, or written to FILE"
    )
    c.add_argument(
        "--near-duplicates", action="store_true", help="also find near-duplicates (perceptual dHash + aHash)"
    )
    c.add_argument("--threshold", type=int, default=None, help="near-duplicate distance in bits of 64 (default 4)")
    c.add_argument("--workers", type=int, default=1, help="threads reading and decoding files (default 1)")
    c.add_argument("--data-root", metavar="DIR", help="where named datasets live (as for 'cnnlab train')")
    c.add_argument("--max-lines", type=int, default=8, help="problems listed per section on screen (default 8)")
    for key, what in (
        ("csv_path_column", "csv:FILE: the column of image paths (default: found by its header, e.g. path, file)"),
        ("csv_label_column", "csv:FILE: the column of labels (default: found by its header, e.g. label, class)"),
        ("csv_split_column", "csv:FILE: the column of splits, train/val/test (default: split, subset or is_valid)"),
        ("csv_root", "csv:FILE: the folder its paths are relative to (default: the CSV's folder)"),
    ):  # the same flags as 'cnnlab train', so one command line checks what training will read
        c.add_argument(f"--data.{key}", dest=key, metavar="NAME" if key != "csv_root" else "DIR", help=what)
    c.set_defaults(func=run)


def _progress_bar():
    """A progress(done, total) callback that draws a tqdm bar on a terminal for big folders, else nothing."""
    state: dict = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            show = sys.stderr.isatty() and total >= 2000
            state["bar"] = None
            if show:
                from tqdm import tqdm

                state["bar"] = tqdm(total=total, unit="img", desc="checking", leave=False)
        if state["bar"] is not None:
            state["bar"].update(1)
            if done == total:
                state["bar"].close()

    return update


def run(args) -> int:
    from cnnlab.data.doctor import NEAR_DUPLICATE_THRESHOLD, check

    threshold = NEAR_DUPLICATE_THRESHOLD if args.threshold is None else args.threshold
    if not 0 <= threshold < 32:
        raise CnnlabError(f"--threshold must be between 0 and 31 bits, got {threshold}.")
    if args.workers < 1:
        raise CnnlabError(f"--workers must be at least 1, got {args.workers}.")
    kw = {"near_duplicates": args.near_duplicates, "threshold": threshold}
    target = args.target
    is_csv = target.startswith("csv:")
    is_folder = is_csv or target.startswith("folder:") or Path(target).expanduser().exists() or "/" in target
    if is_folder:
        kw.update(progress=_progress_bar(), workers=args.workers)
    columns = {"path_column": args.csv_path_column, "label_column": args.csv_label_column}
    columns.update(split_column=args.csv_split_column, csv_root=args.csv_root)
    if any(columns.values()) and not is_csv:
        raise CnnlabError("the --data.csv_* options are for label files (csv:FILE)")
    if is_csv:
        kw.update(columns)
    report = check(target, root=args.data_root, **kw)
    if args.json == "-":
        print(json.dumps(report.to_dict(), indent=2))
        return report.exit_code
    print(report.summary(max_lines=args.max_lines))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(out, json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"full report: {out}")
    return report.exit_code
