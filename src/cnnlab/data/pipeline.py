"""From a dataset and a config to ready loaders: split, normalisation statistics, batches.

``prepare_data`` is the one place where the data flow of ``cnnlab train`` is decided:
stratified seeded train/val split of the training data (test untouched; with ``data.folds`` one fold of
the training data is the test split, see ``splits.assign_folds``), mean/std from the train
split only, the augmentation preset for training batches, and the fast in-memory path for array
datasets or the DataLoader path for image folders. It returns everything the run folder records
(split rows, statistics, counts) next to the loaders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.config import DataConfig
from cnnlab.data.augment import build_augment
from cnnlab.data.datasets import ArrayDataset, FolderDataset
from cnnlab.data.images import load_image
from cnnlab.data.loaders import (
    FolderImages,
    FolderLoader,
    TensorLoader,
    balanced_weights,
    fit_to_input,
    to_tensor_images,
)
from cnnlab.data.splits import assign_folds, channel_stats, stratified_split, train_subset
from cnnlab.errors import CnnlabError


@dataclass
class PreparedData:
    train: object
    val: object | None
    test: object | None
    classes: list[str]
    input_shape: list[int]  # [C, H, W]
    mean: list[float]
    std: list[float]
    split_rows: list[tuple] = field(default_factory=list)  # (split, source, label)
    groups: list[list[str]] = field(default_factory=list)  # duplicate files kept on one side (relative paths)
    counts: dict[str, list[int]] = field(default_factory=dict)  # split -> per-class counts
    generator: torch.Generator | None = None  # drives shuffling and augmentation (saved in checkpoints)
    resize_size: int | None = None  # pretrained weights' transform: shorter side to this, then the central crop
    warnings: list[str] = field(default_factory=list)  # about the data, for metrics.json and the report


def prepare_data(
    ds: ArrayDataset | FolderDataset,
    cfg: DataConfig,
    seed: int,
    device: torch.device,
    channels_last: bool = False,
    train_shuffle: bool = True,
    stats: Callable[[int], tuple[list[float], list[float]]] | None = None,
    resize_size: int | None = None,
) -> PreparedData:
    """Split, compute statistics and build loaders for ``ds`` according to ``cfg``.

    ``stats(channels) -> (mean, std)`` replaces the statistics of the training split and
    ``resize_size`` the whole-image resize (pretrained weights bring the normalisation and the
    resize-then-centre-crop they were trained with; see ``loaders.fit_to_input``).
    """
    gen = torch.Generator().manual_seed(seed)
    if cfg.balance not in ("none", "weights", "sampler"):
        raise CnnlabError(f"data.balance must be none, weights or sampler, not {cfg.balance!r}")
    prepare = _prepare_arrays if isinstance(ds, ArrayDataset) else _prepare_folder
    data = prepare(ds, cfg, seed, device, gen, channels_last, train_shuffle, stats, resize_size)
    data.resize_size = resize_size
    data.warnings = list(getattr(ds, "warnings", []))
    return data


def convert_arrays(
    images: np.ndarray, channels: int | None, size: int | None, resize_size: int | None = None
) -> np.ndarray:
    """uint8 (N, H, W, C) -> uint8 with the requested channel count and square size (``fit_to_input``)."""
    if channels and channels != images.shape[3]:
        if channels == 3 and images.shape[3] == 1:
            images = np.repeat(images, 3, axis=3)
        elif channels == 1 and images.shape[3] == 3:  # ITU-R 601 luma, as Pillow's convert("L")
            images = (images @ np.array([0.299, 0.587, 0.114])).round().clip(0, 255).astype(np.uint8)[..., None]
        else:
            raise CnnlabError(f"cannot convert {images.shape[3]}-channel images to {channels} channels")
    if size and (size, size) != images.shape[1:3] or resize_size:
        t = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float()
        t = fit_to_input(t, size or images.shape[1], resize_size)
        images = t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return images


def _array_split(y, cfg: DataConfig, seed: int, classes) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(train, val, test) indices into the official training split; test None: the official test split.

    With ``cfg.folds`` the test split is fold ``cfg.fold`` of the training split and the official
    test split is not used; validation is carved from the other folds as usual."""
    pool, test = np.arange(len(y)), None
    if cfg.folds:
        fold_of = assign_folds(y, cfg.folds, seed, classes=classes)
        pool, test = np.flatnonzero(fold_of != cfg.fold - 1), np.flatnonzero(fold_of == cfg.fold - 1)
    keep, held = stratified_split(y[pool], cfg.val_fraction, seed)
    keep = keep[train_subset(y[pool][keep], cfg.train_fraction, seed + 2)]
    return pool[keep], pool[held], test


def _prepare_arrays(ds, cfg, seed, device, gen, channels_last, train_shuffle, stats=None, resize=None) -> PreparedData:
    train_x = convert_arrays(ds.train_images, cfg.channels, cfg.image_size, resize)
    y = ds.train_labels
    keep, held, test = _array_split(y, cfg, seed, ds.classes)
    if test is None:
        test_x, test_y, test_ids = (
            convert_arrays(ds.test_images, cfg.channels, cfg.image_size, resize),
            ds.test_labels,
            None,
        )
    else:  # cross-validation: this fold of the training split
        test_x, test_y, test_ids = train_x[test], y[test], test
    mean, std = stats(train_x.shape[3]) if stats else channel_stats(train_x[keep])
    k = len(ds.classes)

    def loader(x, y, train):
        return TensorLoader(
            to_tensor_images(x, device),
            torch.from_numpy(y).to(device),
            batch_size=cfg.batch_size if train else cfg.eval_batch_size,
            mean=mean,
            std=std,
            shuffle=train and train_shuffle,
            augment=build_augment(cfg.augment, x.shape[3]) if train else None,
            generator=gen if train else None,
            channels_last=channels_last,
            weights=balanced_weights(y) if train and cfg.balance == "sampler" else None,
        )

    rows = [("train", int(i), int(y[i])) for i in keep] + [("val", int(i), int(y[i])) for i in held]
    ids = range(len(test_y)) if test_ids is None else test_ids  # split.csv: indices into the split they come from
    rows += [("test", int(i), int(t)) for i, t in zip(ids, test_y)]
    return PreparedData(
        train=loader(train_x[keep], y[keep], True),
        val=loader(train_x[held], y[held], False) if len(held) else None,
        test=loader(test_x, test_y, False),
        classes=list(ds.classes),
        input_shape=[int(train_x.shape[3]), int(train_x.shape[1]), int(train_x.shape[2])],
        mean=mean,
        std=std,
        split_rows=rows,
        counts={
            "train": np.bincount(y[keep], minlength=k).tolist(),
            "val": np.bincount(y[held], minlength=k).tolist(),
            "test": np.bincount(test_y, minlength=k).tolist(),
        },
        generator=gen,
    )


def _units(items, groups) -> list[list[int]]:
    """(path, label) items as the units a split moves: each duplicate group is one unit, so a copy of
    an image never lands on the other side; every other item is a unit of its own. In item order."""
    group_of = {p: g for g, members in enumerate(groups) for p in members}
    units: dict[tuple, list[int]] = {}
    for i, (p, _) in enumerate(items):
        units.setdefault(("group", group_of[p]) if p in group_of else ("item", i), []).append(i)
    return list(units.values())


def _split_items(items, fraction, seed, groups=()):
    """Stratified split of (path, label) items in which each duplicate group moves as one unit."""
    members = _units(items, groups)
    keep, held = stratified_split(np.array([items[m[0]][1] for m in members]), fraction, seed)
    return [items[i] for u in keep for i in members[u]], [items[i] for u in held for i in members[u]]


def _fold_items(items, folds: int, fold: int, seed: int, groups=(), classes=None):
    """(the other folds, fold ``fold``) of stratified K-fold over (path, label) items; each duplicate
    group lies in one fold, so a copy of a test image is never trained on."""
    members = _units(items, groups)
    labels = np.array([items[m[0]][1] for m in members])
    fold_of = assign_folds(labels, folds, seed, sizes=[len(m) for m in members], classes=classes)
    rest = [items[i] for u, m in enumerate(members) if fold_of[u] != fold - 1 for i in m]
    test = [items[i] for u, m in enumerate(members) if fold_of[u] == fold - 1 for i in m]
    return rest, test


def folder_splits(ds: FolderDataset, cfg: DataConfig, seed: int) -> dict[str, list[tuple[Path, int]]]:
    """train/val/test lists: given splits are used as they are; missing val/test are carved from train."""
    splits = {s: list(v) for s, v in ds.splits.items() if v}
    train = splits.get("train", [])
    if not train:
        raise CnnlabError(f"{ds.root} has no training images (expected train/<class>/ or <class>/ folders)")
    groups = getattr(ds, "groups", [])
    carved = cfg.test_fraction
    if cfg.folds:  # cross-validation: fold `fold` is the test split (a test/ folder is not used); val from the rest
        train, splits["test"] = _fold_items(train, cfg.folds, cfg.fold, seed, groups, ds.classes)
        carved = 0.0
    elif "test" not in splits and cfg.test_fraction > 0:
        train, splits["test"] = _split_items(train, cfg.test_fraction, seed, groups)
    if "val" not in splits and cfg.val_fraction > 0:
        fraction = cfg.val_fraction / max(1e-9, 1 - carved)
        train, splits["val"] = _split_items(train, fraction, seed + 1, groups)
    if not cfg.split_manifest:  # a manifest's training list is used as it is (already subsetted)
        train = [train[i] for i in train_subset(np.array([lab for _, lab in train]), cfg.train_fraction, seed + 2)]
    splits["train"] = train
    return splits


def _prepare_folder(ds, cfg, seed, device, gen, channels_last, train_shuffle, stats=None, resize=None) -> PreparedData:
    splits = folder_splits(ds, cfg, seed)
    c, size = ds.channels, ds.image_size
    images = {name: FolderImages(items, c, size, resize) for name, items in splits.items()}
    in_memory = sum(d.nbytes for d in images.values()) <= cfg.cache_mb * 2**20  # the images of every split
    for d in images.values() if in_memory else ():
        d.preload()
    mean, std = stats(c) if stats else _folder_stats(images["train"], seed)  # from memory when preloaded

    def loader(split, train):
        if split not in splits:
            return None
        return FolderLoader(
            images[split],
            cfg.batch_size if train else cfg.eval_batch_size,
            mean,
            std,
            shuffle=train and train_shuffle,
            augment=build_augment(cfg.augment, c) if train else None,
            generator=gen if train else None,
            num_workers=0 if in_memory else cfg.num_workers,
            device=device,
            channels_last=channels_last,
            weights=balanced_weights([lab for _, lab in splits[split]]) if train and cfg.balance == "sampler" else None,
        )

    k = len(ds.classes)
    rows = [
        (s, str(Path(p).relative_to(ds.root)), int(lab))
        for s in ("train", "val", "test")
        for p, lab in splits.get(s, [])
    ]
    return PreparedData(
        train=loader("train", True),
        val=loader("val", False),
        test=loader("test", False),
        classes=list(ds.classes),
        input_shape=[c, size, size],
        mean=mean,
        std=std,
        split_rows=rows,
        groups=[[str(Path(p).relative_to(ds.root)) for p in g] for g in getattr(ds, "groups", [])],
        counts={s: np.bincount([lab for _, lab in v], minlength=k).tolist() for s, v in splits.items()},
        generator=gen,
    )


def _folder_stats(train: FolderImages, seed: int) -> tuple[list[float], list[float]]:
    """Mean/std from (up to) 1,000 training images, decoded exactly as training decodes them."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(train), size=min(1000, len(train)), replace=False)
    arr = np.stack([train[int(i)][0].numpy() for i in pick])  # (n, C, H, W) float
    return arr.mean((0, 2, 3)).tolist(), np.maximum(arr.std((0, 2, 3)), 1e-6).tolist()


def eval_split(ds: ArrayDataset | FolderDataset, split: str) -> str:
    """The split of ``ds`` that evaluating ``split`` scores: that split, or "all" for a folder of class
    folders with no split folders (new photos to score are one split, whatever ``split`` says)."""
    if isinstance(ds, ArrayDataset) or ds.splits.get(split):
        return split
    if ds.layout == "flat":
        return "all"
    have = ", ".join(s for s, v in ds.splits.items() if v) or "none"
    raise CnnlabError(f"{ds.root} has no {split!r} split to evaluate on (it has {have}); choose one with --split")


def class_index(names: list[str], model_classes: list[str], what: str) -> np.ndarray:
    """Each of ``names`` (the classes of data to score) as its index among the model's classes, so a
    folder holding some of the classes, in any order, is scored by name; unknown names are an error."""
    index = {c: i for i, c in enumerate(model_classes)}
    unknown = [c for c in names if c not in index]
    if unknown:
        raise CnnlabError(
            f"{what} has class(es) the model does not know: {', '.join(repr(c) for c in unknown)}. The model's "
            f"classes are {', '.join(repr(c) for c in model_classes)}; rename or remove the others."
        )
    return np.array([index[c] for c in names], dtype=np.int64)


MIN_FILES_FOR_WORKERS = 512  # evaluation of fewer image files decodes them without DataLoader workers


def eval_loader(
    ds: ArrayDataset | FolderDataset, split: str, meta: dict, device, batch_size: int = 1000, num_workers: int = 2
):
    """A loader over ``split`` of ``ds`` (see :func:`eval_split`) preprocessed exactly as the model file
    says, its labels the model's indices of the data's class names (for evaluate)."""
    c, h, _ = meta["input_shape"]
    resize = meta.get("resize_size")
    to_model = class_index(list(ds.classes), list(meta["classes"]), ds.name)
    if isinstance(ds, ArrayDataset):
        x = ds.test_images if split == "test" else ds.train_images
        y = ds.test_labels if split == "test" else ds.train_labels
        x = convert_arrays(x, c, h, resize)
        y = to_model[y]
        return TensorLoader(
            to_tensor_images(x, device), torch.from_numpy(y).to(device), batch_size, meta["mean"], meta["std"]
        )
    ds.channels, ds.image_size = c, h
    which = eval_split(ds, split)
    items = [(p, int(to_model[y])) for p, y in ds.splits["train" if which == "all" else which]]
    # A small split decodes in this process faster than forked workers start, and a long-lived process
    # (a notebook, a test session) that has loaded threaded runtimes is not forked for a few images.
    workers = num_workers if len(items) >= MIN_FILES_FOR_WORKERS else 0
    return FolderLoader(
        FolderImages(items, c, h, resize), batch_size, meta["mean"], meta["std"], num_workers=workers, device=device
    )


__all__ = [
    "PreparedData",
    "prepare_data",
    "convert_arrays",
    "folder_splits",
    "eval_split",
    "class_index",
    "eval_loader",
    "load_image",
]
