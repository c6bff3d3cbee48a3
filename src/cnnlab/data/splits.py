"""Train/validation splits and normalisation statistics.

The validation set is carved out of the training data only, stratified by class and seeded, so
each class keeps its share and the split is the same for the same seed. The test set is never
touched; for cross-validation (``data.folds``) ``assign_folds`` cuts the training data into K
stratified folds, one of which is a run's test split. Mean and standard deviation per channel
are computed on the training split alone (seed 004: statistics from validation or test data would
leak information into training).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic, tables
from cnnlab.readers import read_csv


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices 0..N-1 into (keep, held_out) with ``fraction`` of every class held out.

    Each class with at least 2 samples gives at least one sample to each side, so small classes
    are not lost from either. Returned index arrays are sorted.
    """
    if not 0.0 <= fraction < 1.0:
        raise CnnlabError(f"split fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    if fraction == 0.0:
        return np.arange(len(labels)), np.arange(0)
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n = int(round(fraction * len(idx)))
        n = min(max(n, 1), len(idx) - 1) if len(idx) >= 2 else 0
        held.append(idx[:n])
        keep.append(idx[n:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def assign_folds(labels: np.ndarray, folds: int, seed: int, sizes=None, classes: list[str] | None = None) -> np.ndarray:
    """The fold (0..folds-1) of each unit for stratified, seeded K-fold cross-validation.

    A unit is one sample, or a group of duplicates that must stay together (``sizes``: samples per
    unit; default 1 each). Within each class the units go in a seeded random order, largest first,
    each to the fold holding the fewest samples of that class so far (ties: the fewest samples in
    all, then the lowest fold). Without groups each fold so gets every class's share to within one
    sample, and the fold sizes differ by at most one.
    """
    labels = np.asarray(labels)
    sizes = np.ones(len(labels), np.int64) if sizes is None else np.asarray(sizes)
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(len(labels), np.int64)
    total = np.zeros(folds, np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < folds:
            _too_few_for_folds(classes[c] if classes is not None else str(c), len(idx), folds, sizes[idx].max() > 1)
        idx = idx[rng.permutation(len(idx))]
        idx = idx[np.argsort(-sizes[idx], kind="stable")]  # large groups first, while the folds are empty
        count = np.zeros(folds, np.int64)
        for i in idx:
            f = min(range(folds), key=lambda k: (count[k], total[k], k))
            fold_of[i] = f
            count[f] += sizes[i]
            total[f] += sizes[i]
    return fold_of


def _too_few_for_folds(name: str, n: int, folds: int, grouped: bool) -> None:
    fix = f"or use --folds {n}" if n >= 2 else f"(at least {folds}) or leave the class out"
    raise CnnlabError(
        f"class {name!r} has {n} image{'s' if n != 1 else ''}{' (duplicates counted once)' if grouped else ''}, "
        f"fewer than the {folds} folds: every fold needs one to test on. Add images of {name!r} {fix}"
    )


def train_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a stratified, seeded ``fraction`` of ``labels`` (every class keeps one or more)."""
    if not 0.0 < fraction <= 1.0:
        raise CnnlabError(f"data.train_fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return np.arange(len(labels))
    keep, _ = stratified_split(labels, 1.0 - fraction, seed)  # every class keeps at least one image
    return keep


def channel_stats(images: np.ndarray, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N, H, W, C), scaled to [0, 1].

    Sums of values and of squares are exact integers (uint64; squares of uint8 fit in uint16), taken
    over chunks so 50,000 CIFAR images need little memory; only the final division is floating point.
    """
    if len(images) == 0:
        raise CnnlabError("cannot compute normalisation statistics of an empty training split")
    if images.dtype != np.uint8:
        raise CnnlabError(f"normalisation statistics expect uint8 images, not {images.dtype}")
    c = images.shape[-1]
    total, total_sq, count = np.zeros(c, np.uint64), np.zeros(c, np.uint64), 0
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].reshape(-1, c)
        total += x.sum(0, dtype=np.uint64)
        x16 = x.astype(np.uint16)
        total_sq += np.multiply(x16, x16).sum(0, dtype=np.uint64)
        count += len(x)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    std = np.where(std < 1e-6 * 255, 255.0, std)  # a constant channel would divide by zero
    return (mean / 255.0).tolist(), (std / 255.0).tolist()


def balanced_class_weights(counts) -> list[float]:
    """Class weights ``n / (K * n_k)`` (scikit-learn's "balanced" rule): with them every class adds the
    same total weight to the loss; 1 for balanced data; a class with no samples gets 0.

    The one formula of cnnlab: the data doctor suggests these numbers and ``--balance weights`` uses them.
    """
    c = np.asarray(list(counts), dtype=np.float64)
    n, k = c.sum(), len(c)
    return [float(n / (k * v)) if v > 0 else 0.0 for v in c]


def write_split_csv(path: Path, rows: list[tuple]) -> None:
    """rows: (split, source, label) where source is an index into the original split or a file path."""
    with atomic.atomic_write(path, "w", newline="") as f:  # file names escaped against spreadsheet formulas
        w = tables.writer(f)
        w.writerow(["split", "source", "label"])
        w.writerows(rows)


def read_split_csv(path: Path) -> list[tuple[str, str, int]]:
    """(split, source, label) rows; CnnlabError naming the file when it is malformed (``cnnlab.readers``)."""
    rows = read_csv(path, columns=("split", "source", "label"))
    for line, r in enumerate(rows, start=2):
        label = r["label"] or ""
        if not (label.isascii() and label.isdigit() and len(label) < 10):
            raise CnnlabError(f"{path} line {line}: the label {label[:20]!r} is not a class index (0, 1, 2, ...)")
    return [(r["split"], r["source"], int(r["label"])) for r in rows]


def folder_splits_from_csv(path: Path, root: Path) -> dict[str, list[tuple[Path, int]]]:
    """A folder run's exact splits from its split.csv: {split: [(root / relative path, label)]}."""
    out: dict[str, list[tuple[Path, int]]] = {}
    for split, source, label in read_split_csv(path):
        out.setdefault(split, []).append((Path(root) / source, label))
    return out
