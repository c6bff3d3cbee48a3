"""The dataset registry: one name per dataset, each giving train and test data plus class names.

``load_dataset(name)`` returns either an :class:`ArrayDataset` (small datasets held in memory as
uint8 arrays of shape (N, H, W, C): MNIST, Fashion-MNIST, CIFAR-10/100, the bundled MNIST sample,
scikit-learn's digits) or a :class:`FolderDataset` (image files decoded on the fly: ``folder:PATH``,
class folders, or ``csv:FILE``, a label CSV; ``FILE_DATA`` maps each prefix to its loader).
Raw file formats, checksums and downloads live in :mod:`cnnlab.data.sources`; this module only
names datasets and shapes what they return. NumPy only: no torch import here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.data import sources
from cnnlab.errors import CnnlabError
from cnnlab.registry import Registry

DATASETS: Registry = Registry("dataset")


@dataclass
class ArrayDataset:
    """A dataset held in memory. Images are uint8 (N, H, W, C); labels int64 (N,)."""

    name: str
    classes: list[str]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    note: str = ""

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[3])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "kind": "arrays",
            "classes": self.classes,
            "input_shape": [self.channels, self.image_size, self.image_size],
            "train_count": int(len(self.train_labels)),
            "test_count": int(len(self.test_labels)),
            "train_class_counts": np.bincount(self.train_labels, minlength=self.num_classes).tolist(),
            "note": self.note,
        }


@dataclass
class FolderDataset:
    """Image files on disk. ``splits`` maps 'train'/'val'/'test' to lists of (path, label)."""

    name: str
    root: Path
    classes: list[str]
    splits: dict[str, list[tuple[Path, int]]]
    layout: str  # "splits" (train/ val/ test/ given) or "flat" (one folder of class folders)
    channels: int = 3
    image_size: int = 64
    note: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) left out
    groups: list[list[Path]] = field(default_factory=list)  # exact/near-duplicate files: one side of a split
    warnings: list[str] = field(default_factory=list)  # recorded in data.json, metrics.json and the report
    notes: list[str] = field(default_factory=list)  # said once when the data is loaded

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def relative(self, path: str | Path) -> str:
        """A file's path as messages and split.csv show it: relative to ``root``, '/'-separated."""
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def summary(self) -> dict:
        counts = {
            s: np.bincount([y for _, y in items], minlength=self.num_classes).tolist()
            for s, items in self.splits.items()
        }
        return {
            "name": self.name,
            "kind": "folder",
            "root": str(self.root),
            "layout": self.layout,
            "classes": self.classes,
            "input_shape": [self.channels, self.image_size, self.image_size],
            "class_counts": counts,
            "skipped": [list(s) for s in self.skipped],
            "warnings": list(self.warnings),
            "note": self.note,
        }


def _from_source(name: str, d: dict) -> ArrayDataset:
    return ArrayDataset(
        name=name,
        classes=list(d["classes"]),
        train_images=d["train_images"],
        train_labels=d["train_labels"].astype(np.int64),
        test_images=d["test_images"],
        test_labels=d["test_labels"].astype(np.int64),
        note=d.get("note", ""),
    )


def _root(root: str | Path | None) -> Path:
    return Path(root).expanduser() if root else sources.default_root()


@DATASETS.register("mnist-sample")
def mnist_sample(root=None, download=False, **kw) -> ArrayDataset:
    """6,000 train + 1,000 test real MNIST images shipped with cnnlab (stratified; offline)."""
    return _from_source("mnist-sample", sources.load_mnist_sample())


@DATASETS.register("mnist")
def mnist(root=None, download=False, **kw) -> ArrayDataset:
    """MNIST, 60,000 + 10,000 handwritten digits, 1x28x28 (official IDX files, md5-checked)."""
    return _from_source("mnist", sources.load_idx_dataset("mnist", _root(root), download=download))


@DATASETS.register("fashion-mnist")
def fashion_mnist(root=None, download=False, **kw) -> ArrayDataset:
    """Fashion-MNIST, 60,000 + 10,000 clothing images, 1x28x28 (official IDX files, md5-checked)."""
    return _from_source("fashion-mnist", sources.load_idx_dataset("fashion-mnist", _root(root), download=download))


@DATASETS.register("cifar10")
def cifar10(root=None, download=False, **kw) -> ArrayDataset:
    """CIFAR-10, 50,000 + 10,000 colour images, 3x32x32, 10 classes."""
    return _from_source("cifar10", sources.load_cifar("cifar10", _root(root), download=download))


@DATASETS.register("cifar100")
def cifar100(root=None, download=False, **kw) -> ArrayDataset:
    """CIFAR-100, 50,000 + 10,000 colour images, 3x32x32, 100 fine classes."""
    return _from_source("cifar100", sources.load_cifar("cifar100", _root(root), download=download))


@DATASETS.register("digits")
def digits(root=None, download=False, **kw) -> ArrayDataset:
    """scikit-learn's 1,797 8x8 digits (no official split: a fixed seeded stratified 80/20 one)."""
    return _from_source("digits", sources.load_digits())


def load_folder(
    path: str | Path,
    image_size: int | None = None,
    channels: int | None = None,
    on_bad_image: str = "fail",
    max_bad_fraction: float = 0.05,
    manifest: str | Path | None = None,
    on_leak: str = "fail",
    on_label_conflict: str = "fail",
    clashes: bool = True,
    unused_splits: tuple[str, ...] = (),
    **_: object,  # the options of other kinds of file data (csv_*), which a folder does not use
) -> FolderDataset:
    """``folder:PATH``: class subfolders, with train/ (val/, test/) splits or one flat folder to split.

    Every file is decoded once here (``screening.screen_samples``), so an unreadable file is found
    before training starts and never reaches a DataLoader worker: ``on_bad_image="fail"`` stops
    with the list of bad files, ``"skip"`` leaves them out and records them in ``skipped``. The
    same pass fingerprints each file, and exact copies and near-duplicates become ``groups`` that a
    carved split keeps on one side (no copy of a training image in val or test).
    With ``manifest`` (a ``split_manifest.csv`` of an earlier run), the exact same files go to the
    same splits, after checking that none is missing or changed (SHA-256). Exact copies under two
    labels and copies across given splits follow ``on_label_conflict`` and ``on_leak``
    (``screening.resolve_clashes``; ``clashes=False``: not looked for, as when scoring a folder;
    ``unused_splits``: given splits the run will not use, such as cross-validation's test/).
    """
    from cnnlab.data.folder import read_manifest, scan_folder, splits_from_manifest  # local: Pillow

    scan = scan_folder(Path(path).expanduser())
    if manifest:
        scan.splits = splits_from_manifest(scan.root, read_manifest(manifest), scan.classes)
        scan.layout = "manifest"
    ds = FolderDataset(
        f"folder:{path}", scan.root, scan.classes, scan.splits, scan.layout, channels or 3, image_size or 64
    )
    return screen_dataset(ds, on_bad_image, max_bad_fraction, on_leak, on_label_conflict, clashes, unused_splits)


def screen_dataset(
    ds: FolderDataset,
    on_bad_image: str,
    max_bad_fraction: float,
    on_leak: str,
    on_label_conflict: str,
    clashes: bool = True,
    unused_splits: tuple[str, ...] = (),
) -> FolderDataset:
    """Decode every file of ``ds`` once (unreadable ones fail or are skipped), apply the policies for
    label conflicts and leaks, and group the remaining copies and near-duplicates for the split."""
    from cnnlab.data.screening import Clashes, duplicate_groups, resolve_clashes, screen_samples  # local: Pillow

    prints: dict = {}
    splits, bad = screen_samples(
        ds.splits, on_bad_image=on_bad_image, max_bad_fraction=max_bad_fraction, workers=2, fingerprints=prints
    )
    found = (
        resolve_clashes(splits, prints, ds.classes, ds.relative, on_leak, on_label_conflict, unused_splits)
        if clashes
        else Clashes(splits)
    )
    kept = {p for v in found.splits.values() for p, _ in v}
    ds.splits = found.splits
    ds.skipped = [(p, reason) for _, p, reason in bad] + found.left_out
    ds.warnings = found.warnings
    ds.groups = duplicate_groups({p: f for p, f in prints.items() if p in kept})
    label = {p: y for v in ds.splits.values() for p, y in v}
    for g in ds.groups:  # near-duplicates (exact copies under two labels were handled above)
        names = sorted({ds.classes[label[p]] for p in g})
        if len(names) > 1:
            files = " ~ ".join(ds.relative(p) for p in g[:4])
            ds.notes.append(f"possible label conflict: {files} look alike but are labelled {' and '.join(names)}")
    return ds


def load_csv(
    path: str | Path,
    image_size: int | None = None,
    channels: int | None = None,
    on_bad_image: str = "fail",
    max_bad_fraction: float = 0.05,
    manifest: str | Path | None = None,
    on_leak: str = "fail",
    on_label_conflict: str = "fail",
    clashes: bool = True,
    unused_splits: tuple[str, ...] = (),
    csv_path_column: str | None = None,
    csv_label_column: str | None = None,
    csv_split_column: str | None = None,
    csv_root: str | None = None,
) -> FolderDataset:
    """``csv:FILE``: images and labels listed in a CSV (``cnnlab.data.labels_csv``), with or without a
    split column; then everything a folder gets: screening, the leak and label-conflict policies,
    duplicate groups, and ``manifest`` to repeat an earlier run's split."""
    from cnnlab.data.folder import read_manifest, splits_from_manifest
    from cnnlab.data.labels_csv import scan_csv

    scan = scan_csv(
        path, path_column=csv_path_column, label_column=csv_label_column, split_column=csv_split_column, root=csv_root
    )
    if manifest:
        scan.splits = splits_from_manifest(scan.root, read_manifest(manifest), scan.classes)
        scan.layout = "manifest"
    ds = FolderDataset(
        f"csv:{path}", scan.root, scan.classes, scan.splits, scan.layout, channels or 3, image_size or 64
    )
    return screen_dataset(ds, on_bad_image, max_bad_fraction, on_leak, on_label_conflict, clashes, unused_splits)


@dataclass(frozen=True)
class FileData:
    """A kind of ``PREFIX:PATH`` data whose images are files: how to load it, and the folder its
    relative paths (split.csv) start from, given the path and the run's ``data`` config section."""

    load: Callable[..., FolderDataset]
    root: Callable[[str, dict], Path]
    run_name: Callable[[Path], str]  # the absolute path -> the data part of a run folder's default name
    example: str


FILE_DATA: dict[str, FileData] = {
    "folder": FileData(load_folder, lambda path, d: Path(path).expanduser(), lambda p: p.name, "folder:./my_images"),
    "csv": FileData(
        load_csv,
        lambda path, d: Path(d.get("csv_root") or Path(path).expanduser().parent).expanduser(),
        lambda p: f"{p.parent.name}-{p.stem}".strip("-"),  # ~/pets/labels.csv -> pets-labels
        "csv:./labels.csv",
    ),
}


def file_data(name: str) -> tuple[FileData, str] | None:
    """(its kind, the path) for ``folder:PATH`` / ``csv:FILE`` data, else None (a named dataset)."""
    prefix, sep, path = str(name).partition(":")
    return (FILE_DATA[prefix], path) if sep and prefix in FILE_DATA else None


def file_data_root(name: str, data_config: dict | None = None) -> Path | None:
    """The folder that the relative paths of ``name``'s split.csv start from; None for a named dataset."""
    found = file_data(name)
    return found[0].root(found[1], data_config or {}) if found else None


def write_folder_manifest(path: Path, ds: FolderDataset, split_rows: list[tuple]) -> None:
    """Write ``split_manifest.csv``: split, path (relative), label, class and SHA-256 of every file used,
    so ``--data.split_manifest`` can repeat the exact split later."""
    from cnnlab.data.folder import file_sha256, write_manifest

    rows = [
        {
            "split": split,
            "path": Path(rel).as_posix(),
            "label": label,
            "class": ds.classes[label],
            "sha256": file_sha256(ds.root / rel),
        }
        for split, rel, label in split_rows
    ]
    write_manifest(path, rows)


def load_dataset(
    name: str, root: str | Path | None = None, download: bool = False, **kw
) -> ArrayDataset | FolderDataset:
    """Load a dataset by registered name or ``folder:PATH``.

    Args:
        name: e.g. ``"mnist-sample"``, ``"cifar10"``, ``"folder:~/photos"``, ``"csv:~/photos/labels.csv"``.
        root: folder with the dataset files (see docs/data.md for the layout of each).
        download: fetch missing files from the official mirrors (checksums verified).
        **kw: for image files (``FILE_DATA``), the arguments of :func:`load_folder` / :func:`load_csv`.
    """
    found = file_data(name)
    if found is not None:
        kind, path = found
        if not path:
            raise CnnlabError(f"{name} needs a path, e.g. --data {kind.example}")
        return kind.load(path, **{k: v for k, v in kw.items() if v is not None})
    return DATASETS.get(name)(root=root, download=download)


def list_datasets() -> list[str]:
    return [*DATASETS.names(), "folder:PATH", "csv:FILE"]


def describe_datasets() -> dict[str, str]:
    """name -> first docstring line, for `cnnlab datasets` and the docs."""
    return {n: (DATASETS.get(n).__doc__ or "").strip().splitlines()[0] for n in DATASETS.names()}
