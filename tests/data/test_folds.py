"""Stratified K-fold assignment (data.folds / data.fold): shares, coverage, duplicate groups, seeds, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.config import Config, DataConfig, apply_overrides
from cnnlab.data.datasets import ArrayDataset, FolderDataset
from cnnlab.data.pipeline import folder_splits, prepare_data
from cnnlab.data.splits import assign_folds
from cnnlab.errors import CnnlabError

COUNTS = [100, 50, 20, 7, 5]  # uneven classes, the smallest one exactly K images


def _labels() -> np.ndarray:
    return np.repeat(np.arange(len(COUNTS)), COUNTS)


def test_folds_keep_every_class_share_to_within_one():
    labels = _labels()
    fold_of = assign_folds(labels, 5, seed=3)
    per_class = np.array([[np.sum((labels == c) & (fold_of == f)) for f in range(5)] for c in range(len(COUNTS))])
    assert (per_class.max(1) - per_class.min(1) <= 1).all(), per_class
    assert (per_class.sum(1) == COUNTS).all()  # every sample in exactly one fold
    sizes = np.bincount(fold_of, minlength=5)
    assert sizes.max() - sizes.min() <= 1, sizes


def test_folds_are_seeded():
    labels = _labels()
    assert (assign_folds(labels, 4, seed=1) == assign_folds(labels, 4, seed=1)).all()
    assert (assign_folds(labels, 4, seed=1) != assign_folds(labels, 4, seed=2)).any()


def _folder(groups) -> FolderDataset:
    items = [(f"/imgs/c{c}/{i}.png", c) for c, n in enumerate([12, 9, 7]) for i in range(n)]
    return FolderDataset(
        name="imgs", root="/imgs", classes=["c0", "c1", "c2"], splits={"train": items}, layout="flat", groups=groups
    )


def test_each_image_is_tested_in_exactly_one_fold_and_duplicates_stay_together():
    groups = [["/imgs/c0/0.png", "/imgs/c0/5.png", "/imgs/c0/7.png"], ["/imgs/c1/2.png", "/imgs/c1/3.png"]]
    ds = _folder(groups)
    tested = []
    for k in range(1, 4):
        splits = folder_splits(ds, DataConfig(folds=3, fold=k, val_fraction=0.2), seed=0)
        side = {p: s for s, items in splits.items() for p, _ in items}
        assert len(side) == sum(map(len, splits.values())) == len(ds.splits["train"])  # every image, once
        for g in groups:  # a copy is never on the other side of any split
            assert len({side[p] for p in g}) == 1, (k, g, [side[p] for p in g])
        tested += [p for p, _ in splits["test"]]
    assert sorted(tested) == sorted(p for p, _ in ds.splits["train"])


def test_a_class_with_fewer_images_than_folds_is_refused_by_name():
    ds = _folder([])
    with pytest.raises(CnnlabError, match=r"class 'c2' has 7 images, fewer than the 8 folds.*--folds 7"):
        folder_splits(ds, DataConfig(folds=8, fold=1), seed=0)
    grouped = _folder([[f"/imgs/c2/{i}.png" for i in range(5)]])  # 7 images, 3 after keeping copies together
    with pytest.raises(CnnlabError, match=r"class 'c2' has 3 images \(duplicates counted once\)"):
        folder_splits(grouped, DataConfig(folds=5, fold=1), seed=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data.folds": 1}, "data.folds .* at least 2"),
        ({"data.folds": -3}, "data.folds .* at least 2"),
        ({"data.folds": 3, "data.fold": 0}, "data.fold must be between 1 and data.folds"),
        ({"data.folds": 3, "data.fold": 4}, "data.fold must be between 1 and data.folds"),
        ({"data.folds": 3, "data.split_manifest": "m.csv"}, "cannot be combined"),
    ],
)
def test_fold_keys_are_checked(overrides, message):
    with pytest.raises(CnnlabError, match=message):
        apply_overrides(Config(), overrides)


def test_array_folds_test_on_the_training_split():
    """A named dataset's fold tests on part of its training split; the official test split is not used."""
    rng = np.random.default_rng(0)
    labels = _labels()
    ds = ArrayDataset(
        "toy",
        [str(c) for c in range(len(COUNTS))],
        rng.integers(0, 256, (len(labels), 4, 4, 1), dtype=np.uint8),
        labels,
        np.zeros((3, 4, 4, 1), np.uint8),
        np.zeros(3, np.int64),
    )
    tested = []
    for k in (1, 2):
        data = prepare_data(ds, DataConfig(folds=2, fold=k, augment="none"), 0, torch.device("cpu"))
        rows = {s: [int(src) for split, src, _ in data.split_rows if split == s] for s in ("train", "val", "test")}
        assert not set(rows["test"]) & (set(rows["train"]) | set(rows["val"]))
        assert [lab for split, _, lab in data.split_rows if split == "test"] == labels[rows["test"]].tolist()
        assert data.counts["test"] == np.bincount(labels[rows["test"]], minlength=len(COUNTS)).tolist()
        tested += rows["test"]
    assert sorted(tested) == list(range(len(labels)))
