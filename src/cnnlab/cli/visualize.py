"""``cnnlab visualize RUN KIND``: pictures of a trained model — first-layer filters, feature maps,
Grad-CAM, saliency, a right/wrong prediction grid, and 1-D/2-D loss-landscape slices."""

from __future__ import annotations

from cnnlab.cli._options import add_device, run_path

KINDS = ["filters", "feature-maps", "gradcam", "saliency", "predictions", "landscape"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "visualize",
        help="filters, feature maps, Grad-CAM, saliency, prediction grid, loss landscape",
        description="Draw one kind of picture of a trained run (PNG, with a JSON of the numbers beside it). "
        "--index picks the test image for feature-maps, gradcam and saliency.",
    )
    p.add_argument(
        "run",
        metavar="RUN",
        type=run_path,
        help="run folder written by cnnlab train (or demo:mnist, the trained model shipped with cnnlab)",
    )
    p.add_argument("kind", choices=KINDS, metavar="KIND", help=" | ".join(KINDS))
    p.add_argument("--index", type=int, default=0, help="test image position (default 0)")
    p.add_argument("--out", help="folder for the pictures (default RUN/plots)")
    p.add_argument("--target", type=int, help="class index to explain (gradcam/saliency; default: the prediction)")
    p.add_argument("--layer", help="conv layer name for Grad-CAM (default: the last conv layer)")
    p.add_argument("--n", type=int, help="images in the prediction grid (default 32)")
    p.add_argument("--steps", type=int, help="landscape points per axis (default 21; 2-D uses about half)")
    p.add_argument("--span", type=float, help="landscape range [-span, span] (default 1.0)")
    p.add_argument("--samples", type=int, help="test images the landscape loss is computed on (default 500)")
    p.add_argument("--seed", type=int, help="seed of the grid sample / landscape directions (default 0)")
    add_device(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.viz.inspect import visualize

    options = {k: getattr(args, k) for k in ("target", "layer", "n", "steps", "span", "samples", "seed")}
    paths = visualize(args.run, args.kind, index=args.index, out=args.out, device=args.device, **options)
    for p in paths:
        print(f"wrote {p} (numbers in {p.with_suffix('.json').name})")
    return 0
