"""``cnnlab augment-preview``: one batch before and after augmentation, as a PNG grid."""

from __future__ import annotations

from cnnlab.cli._options import add_output


def add_parser(sub) -> None:
    p = sub.add_parser(
        "augment-preview",
        help="write a PNG of one batch before and after augmentation",
        description="Take the first N training images of a dataset, apply an augmentation (a preset or a "
        "'+'-joined op list such as 'crop(pad=4)+hflip+erase'), and write the originals above the "
        "augmented images. --mixup/--cutmix show the batch-level mixing too.",
    )
    p.add_argument(
        "--data", default="mnist-sample", help="dataset name, folder:PATH or csv:FILE (default mnist-sample)"
    )
    p.add_argument(
        "--on-bad-image",
        choices=["fail", "skip"],
        default="fail",
        help="unreadable files in a folder or CSV: fail (default) or skip them",
    )
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--augment", default="auto", help="preset or op list (default auto)")
    p.add_argument("-n", "--count", type=int, default=16, help="images in the batch (default 16)")
    p.add_argument("--mixup", type=float, default=0.0, help="MixUp alpha (0: off)")
    p.add_argument("--cutmix", type=float, default=0.0, help="CutMix alpha (0: off)")
    p.add_argument("--seed", type=int, default=0)
    add_output(p, "PNG", "augment_preview.png")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from cnnlab.data.augment import build_augment, build_mixer
    from cnnlab.data.datasets import load_dataset
    from cnnlab.data.pipeline import convert_arrays
    from cnnlab.errors import CnnlabError

    if args.count < 1:
        raise CnnlabError("--count must be at least 1")
    # a preview trains nothing: skip leaves out every unreadable file, and copies across splits or labels
    # are not its business ('cnnlab data check' reports them)
    ds = load_dataset(
        args.data, root=args.data_root, on_bad_image=args.on_bad_image, max_bad_fraction=1.0, clashes=False
    )
    if hasattr(ds, "train_images"):
        images = convert_arrays(ds.train_images[: args.count], None, None)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # (B, C, H, W)
    else:
        from cnnlab.data.loaders import FolderImages

        items = next(v for v in ds.splits.values() if v)[: args.count]  # train, or the first split there is
        x = torch.stack([FolderImages(items, ds.channels, ds.image_size)[i][0] for i in range(len(items))])
    gen = torch.Generator().manual_seed(args.seed)
    aug = build_augment(args.augment, x.shape[1])
    after = aug(x.clone(), gen) if aug is not None else x.clone()
    title = f"augment: {args.augment}"
    mixer = build_mixer(args.mixup, args.cutmix, gen)
    if mixer is not None:
        after, _, lam = mixer(after, torch.arange(len(after)))
        title += f" + {'CutMix' if args.cutmix else 'MixUp'} (lam {lam:.2f})"
    from cnnlab.viz.training_plots import plot_augment_grid

    path = plot_augment_grid(x, after, args.output or "augment_preview.png", title)
    print(f"wrote {path} ({len(x)} images; top: original, bottom: augmented)")
    return 0
