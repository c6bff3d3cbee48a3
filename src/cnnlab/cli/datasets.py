"""``cnnlab datasets``: the registered datasets, what each is, and whether its files are here.

With ``--check`` each dataset is loaded (from ``--data-root``, the ``CNNLAB_DATA`` folder or the
default data root), so the table says which ones train offline right now and, for the others, the
first line of the error that says where to put the files.
"""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "datasets",
        help="list the registered datasets (and which are available here)",
        description="List the datasets 'cnnlab train --data NAME' accepts. Image folders are given as "
        "folder:PATH (class subfolders, optionally under train/ val/ test/), label files as csv:FILE (a path and "
        "a label column, optionally a split column); 'cnnlab data check' inspects either.",
    )
    p.add_argument("--check", action="store_true", help="load each dataset to say whether its files are here")
    p.add_argument("--data-root", help="folder holding the dataset files (default: $CNNLAB_DATA or ~/.cache/cnnlab)")
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.data.datasets import describe_datasets, load_dataset
    from cnnlab.errors import CnnlabError

    rows = [("name", "what", *(("here?",) if args.check else ()))]
    for name, what in describe_datasets().items():
        status = ()
        if args.check:
            try:
                ds = load_dataset(name, root=args.data_root)
                status = (f"yes: {len(ds.train_labels):,} train / {len(ds.test_labels):,} test",)
            except CnnlabError as exc:
                status = ("no: " + str(exc).splitlines()[0] + " ('cnnlab train --data NAME' says where to put them)",)
        rows.append((name, what, *status))
    for name, what in (
        ("folder:PATH", "your own images: one subfolder per class (train/ val/ test/ optional)"),
        ("csv:FILE", "your own images listed in a CSV: path and label columns (a split column optional)"),
    ):
        rows.append((name, what, *(("-",) if args.check else ())))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(r, widths)) + "  " + r[-1])
    return 0
