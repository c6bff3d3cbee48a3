"""``cnnlab interpret RUN``: where a trained model goes wrong — the most confused class pairs, the
highest-loss test images (table and gallery PNG) and ``RUN/misclassified.csv`` with every mistake."""

from __future__ import annotations

from cnnlab.cli._options import add_device, run_path
from cnnlab.cli._text import shorten


def add_parser(sub) -> None:
    p = sub.add_parser(
        "interpret",
        help="most-confused classes, worst predictions, misclassified.csv",
        description="Interpret a run's mistakes on its test split: confused pairs, highest-loss images "
        "(RUN/plots/worst.png) and every misclassified sample (RUN/misclassified.csv).",
    )
    p.add_argument(
        "run",
        metavar="RUN",
        type=run_path,
        help="run folder written by cnnlab train (or demo:mnist, the trained model shipped with cnnlab)",
    )
    p.add_argument("--top", type=int, default=25, help="how many worst predictions to list and draw (default 25)")
    p.add_argument("--split", default="test", choices=["train", "test"], help="which split (default test)")
    add_device(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.errors import CnnlabError
    from cnnlab.evaluation.interpret import interpret_run
    from cnnlab.runs.builtin import display_name
    from cnnlab.viz.plots import plot_image_grid

    if args.top < 1:
        raise CnnlabError(f"--top must be at least 1, not {args.top}")
    res = interpret_run(args.run, top=args.top, split=args.split, device=args.device)
    rp, worst, wrong = res["predictions"], res["worst"], res["num_wrong"]
    total = len(rp.targets)
    print(f"{display_name(rp.run_dir)}: {total - wrong} of {total} {args.split} images right, {wrong} wrong\n")
    print("most confused pairs (true -> predicted)")
    for r in res["confused"]:
        share = f"{100 * r['share']:.1f} % of {r['true']}"
        print(f"  {r['true'][:16]:>16} -> {r['pred'][:16]:<16} {r['count']:6d}  ({share})")
    if not res["confused"]:
        print("  none: every image was classified correctly")
    print(f"\n{len(worst)} highest-loss images")
    print(f"  {'id':>20}  {'true':>12}  {'predicted':>12}  confidence    loss")
    for r in worst:
        names = f"{shorten(r['id'], 20, keep='end'):>20}  {shorten(r['true'], 12):>12}  {shorten(r['pred'], 12):>12}"
        print(f"  {names}  {r['confidence']:10.3f}  {r['loss']:6.3f}")
    (rp.out_dir / "plots").mkdir(exist_ok=True)
    gallery = rp.out_dir / "plots" / "worst.png"
    plot_image_grid(rp.images([r["index"] for r in worst]), worst, gallery, f"{len(worst)} highest-loss images")
    print(f"\nwrote {res['misclassified_csv']} ({wrong} rows) and {gallery}")
    return 0
