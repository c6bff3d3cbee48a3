"""Screening a folder of images before training: every file decoded once, and duplicates grouped.

``screen_samples`` decodes each file under the training rule so that an unreadable one is found
before training starts (``--on-bad-image fail`` stops, ``skip`` leaves it out). While a file is
open it also takes its fingerprint: a BLAKE2b digest of its bytes (exact copies) and two 64-bit
perceptual hashes, dHash and aHash (near-duplicates: resized, recompressed or lightly edited
copies). ``duplicate_groups`` turns the fingerprints into groups that a split must keep on one side,
so no image has a copy across train and val/test (leakage). The data doctor (``cnnlab data check``)
reports with the same hashes and thresholds.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.config import CONFLICT_POLICIES, LEAK_POLICIES
from cnnlab.data.images import SUPPORTED_MODES, ImageReadError, open_image, to_array
from cnnlab.errors import CnnlabError
from cnnlab.files.kinds import read_regular_bytes

NEAR_DUPLICATE_THRESHOLD = 4  # bits (of 64) that may differ in both dHash and aHash
MAX_BUCKET = 256  # items sharing one hash band beyond which that band value is "crowded" (not compared)
_HASH_SIZE = 8


_BIT_WEIGHTS = np.uint64(1) << np.arange(64, dtype=np.uint64)


def _bits_to_int(bits: np.ndarray) -> int:
    """64 booleans -> one unsigned 64-bit integer (bit i = element i)."""
    return int(np.bitwise_or.reduce(bits.ravel().astype(np.uint64) * _BIT_WEIGHTS))


def perceptual_hashes(img: Image.Image) -> tuple[int, int]:
    """(dHash, aHash) of an upright image, 64 bits each, from its grayscale.

    dHash: shrink to 9x8 (box filter) and set a bit where brightness rises from one column to the
    next; aHash: shrink to 8x8 and set a bit where a cell is brighter than the mean. Plain 8-bit
    images use Pillow's 8-bit grayscale (fast); every other mode goes through the decoding rule.
    """
    w, h = img.size
    factor = min(w, h) // (4 * _HASH_SIZE)
    if factor >= 2 and img.mode in ("L", "RGB"):
        img = img.reduce(factor)  # cheap area shrink of big photos first
    if img.mode in ("L", "RGB") and "transparency" not in img.info:
        gray = img.convert("L")
    else:
        gray = Image.fromarray(to_array(img, 1)[..., 0])  # mode 'F'
    d = np.asarray(gray.resize((_HASH_SIZE + 1, _HASH_SIZE), Image.Resampling.BOX), dtype=np.float32)  # (8, 9)
    a = np.asarray(gray.resize((_HASH_SIZE, _HASH_SIZE), Image.Resampling.BOX), dtype=np.float32)  # (8, 8)
    return _bits_to_int(d[:, 1:] > d[:, :-1]), _bits_to_int(a > a.mean())


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per element of a uint64 array."""
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(x)
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(axis=-1)


def near_duplicate_pairs(
    dh: np.ndarray, ah: np.ndarray, threshold: int, max_bucket: int = MAX_BUCKET
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Index pairs (i < j) whose dHash and aHash both differ in at most ``threshold`` bits.

    Pigeonhole search: split the 64-bit dHash into threshold + 1 bands; two hashes within
    ``threshold`` bits agree exactly on at least one band, so only items sharing a band value are
    compared. A band value shared by more than ``max_bucket`` items marks a crowded, low-detail
    region of hash space (digits on a black background, blank images): comparing all of those pairs
    would be quadratic and mostly meaningless, so those buckets are skipped and their items returned.

    Returns:
        (pairs, crowded) with ``crowded`` a bool mask (N,) of items in a skipped bucket, whose
        near-duplicates may be missed.
    """
    edges = np.linspace(0, 64, threshold + 2).astype(int)
    pairs: set[tuple[int, int]] = set()
    crowded = np.zeros(len(dh), dtype=bool)
    for lo, hi in zip(edges[:-1], edges[1:]):
        band = (dh >> np.uint64(lo)) & np.uint64((1 << int(hi - lo)) - 1)
        order = np.argsort(band, kind="stable")
        _, starts, sizes = np.unique(band[order], return_index=True, return_counts=True)
        for start, size in zip(starts[sizes > 1], sizes[sizes > 1]):
            idx = order[start : start + size]  # (g,) items sharing this band value
            if size > max_bucket:
                crowded[idx] = True
                continue
            close = (popcount(dh[idx, None] ^ dh[None, idx]) <= threshold) & (
                popcount(ah[idx, None] ^ ah[None, idx]) <= threshold
            )  # (g, g)
            ii, jj = np.nonzero(np.triu(close, k=1))
            pairs.update(zip(np.minimum(idx[ii], idx[jj]).tolist(), np.maximum(idx[ii], idx[jj]).tolist()))
    return sorted(pairs), crowded


def groups_from_pairs(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components (union-find) of the pair graph, only those with 2+ members, sorted."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[find(i)] = find(j)
    comps: dict[int, list[int]] = defaultdict(list)
    for i in {k for p in pairs for k in p}:
        comps[find(i)].append(i)
    return sorted(sorted(c) for c in comps.values())


BAD_IMAGE_POLICIES = ("skip", "fail")
MAX_BAD_FRACTION = 0.05  # skip: stop when more than this fraction of the images is unreadable


Fingerprint = tuple[str, int, int]  # (BLAKE2b digest of the file's bytes, dHash, aHash)


def _screen_one(path: Path) -> tuple[str | None, Fingerprint | None]:
    """(None, fingerprint) if ``path`` decodes under the training rule, else (the reason, None)."""
    try:
        data = read_regular_bytes(path)  # a FIFO named x.jpg (a CSV can name anything) must not block
        img = open_image(data, name=path)
        if img.mode not in SUPPORTED_MODES:
            return f"unsupported image mode {img.mode!r}", None
        dh, ah = perceptual_hashes(img)
    except ImageReadError as exc:
        return exc.reason, None
    except OSError as exc:  # unreadable file (permissions, vanished) or a decoder failure while hashing
        return f"cannot be read: {exc}", None
    return None, (hashlib.blake2b(data, digest_size=16).hexdigest(), dh, ah)


MAX_NEAR_GROUP = 20  # a chain of more "near-duplicates" is a family of look-alikes (digits, blank scans), not copies


def duplicate_groups(
    fingerprints: dict[Path, Fingerprint], threshold: int = NEAR_DUPLICATE_THRESHOLD
) -> list[list[Path]]:
    """Groups (2+ files) of exact copies and near-duplicates, as the data doctor finds them; a split
    that keeps each group on one side cannot leak a copy of a training image into val or test.

    Near-duplicate pairs chain (A~B, B~C); a chain longer than ``MAX_NEAR_GROUP`` files is a region
    of look-alike images rather than copies of one picture, and moving it as one unit could empty a
    class from val or test, so such chains are left ungrouped (exact copies are always grouped).
    """
    paths = list(fingerprints)
    if len(paths) < 2:
        return []
    dh = np.array([fingerprints[p][1] for p in paths], dtype=np.uint64)
    ah = np.array([fingerprints[p][2] for p in paths], dtype=np.uint64)
    near, _ = near_duplicate_pairs(dh, ah, threshold)
    small = {i for g in groups_from_pairs(len(paths), near) if len(g) <= MAX_NEAR_GROUP for i in g}
    first: dict[str, int] = {}
    exact = [(first[d], i) for i, d in enumerate(fingerprints[p][0] for p in paths) if first.setdefault(d, i) != i]
    pairs = [(i, j) for i, j in near if i in small] + exact
    return [[paths[i] for i in g] for g in groups_from_pairs(len(paths), pairs)]


def screen_samples(
    splits: dict[str, list[tuple[Path, int]]],
    *,
    on_bad_image: str = "fail",
    max_bad_fraction: float = MAX_BAD_FRACTION,
    workers: int = 1,
    fingerprints: dict[Path, Fingerprint] | None = None,
) -> tuple[dict[str, list[tuple[Path, int]]], list[tuple[str, str, str]]]:
    """Decode every file once before training, so a bad file never reaches a DataLoader worker.

    Args:
        splits: ``{split: [(path, label)]}`` as from ``scan_folder`` (or after the train/val split).
        on_bad_image: "fail" raises on the first check if any file is unreadable; "skip" drops them.
        max_bad_fraction: with "skip", raise when more than this fraction of all images is unreadable.
        workers: threads decoding files.
        fingerprints: if given, filled with each readable file's fingerprint (for ``duplicate_groups``).

    Returns:
        (the splits without unreadable files, ``[(split, path, reason)]`` of the files left out).

    Raises:
        CnnlabError: "fail" with any unreadable file, "skip" above the threshold; the message lists files.
    """
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise CnnlabError(f"--on-bad-image must be one of {', '.join(BAD_IMAGE_POLICIES)}, got {on_bad_image!r}.")
    items = [(split, p, y) for split, samples in splits.items() for p, y in samples]
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(_screen_one, [p for _, p, _ in items]))
    else:
        results = [_screen_one(p) for _, p, _ in items]
    reasons = [r for r, _ in results]
    if fingerprints is not None:
        fingerprints.update({p: f for (_, p, _), (_, f) in zip(items, results) if f is not None})
    bad = [(split, str(p), r) for (split, p, _), r in zip(items, reasons) if r is not None]
    if not bad:
        return splits, []
    listing = "; ".join(f"{p}: {r}" for _, p, r in bad[:10]) + (f" (and {len(bad) - 10} more)" if len(bad) > 10 else "")
    if on_bad_image == "fail":
        raise CnnlabError(
            f"{len(bad)} unreadable image(s): {listing}. Fix or delete them ('cnnlab data check' lists them all), "
            "or pass --on-bad-image skip to go on without them."
        )
    if len(bad) > max_bad_fraction * len(items):
        enough = min(1.0, round(len(bad) / len(items) + 0.005, 2))  # rounded up to the next hundredth
        raise CnnlabError(
            f"{len(bad)} of {len(items)} images are unreadable ({len(bad) / len(items):.1%}), more than the "
            f"{max_bad_fraction:.0%} that --on-bad-image skip tolerates (data.max_bad_fraction): {listing}. Run "
            "'cnnlab data check' to see them all, and fix or delete them, or raise the limit with "
            f"--data.max_bad_fraction {enough} to go on without them."
        )
    keep: dict[str, list[tuple[Path, int]]] = {split: [] for split in splits}
    for (split, p, y), r in zip(items, reasons):
        if r is None:
            keep[split].append((p, y))
    lost = sorted({y for s, p, y in items if s == "train"} - {y for _, y in keep.get("train", [])})
    if lost:
        raise CnnlabError(
            f"after leaving out unreadable images, class label(s) {lost} have no training images left: {listing}."
        )
    return keep, bad


# --- copies that disagree: one image under two labels, or in train and in val/test ----------------

Item = tuple[str, Path, int]  # (split, path, label)


@dataclass
class Clashes:
    """What :func:`resolve_clashes` did: the splits it returns, the files it left out as
    ``(file, reason)``, warnings the run records (leaks kept) and notes for its log."""

    splits: dict[str, list[tuple[Path, int]]]
    left_out: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _copies(splits: dict[str, list[tuple[Path, int]]], fingerprints: dict[Path, Fingerprint]) -> list[list[Item]]:
    """Groups (2+) of samples whose files hold the same bytes, in split then path order."""
    by_digest: dict[str, list[Item]] = defaultdict(list)
    for split, samples in splits.items():
        for p, y in samples:
            if p in fingerprints:
                by_digest[fingerprints[p][0]].append((split, p, y))
    return [g for g in by_digest.values() if len(g) > 1]


def _listing(groups: list[list[Item]], show: Callable[[Item], str], limit: int = 5) -> str:
    text = "; ".join(" == ".join(show(i) for i in g) for g in groups[:limit])
    return text + (f" (and {len(groups) - limit} more)" if len(groups) > limit else "")


def resolve_clashes(
    splits: dict[str, list[tuple[Path, int]]],
    fingerprints: dict[Path, Fingerprint],
    classes: list[str],
    name: Callable[[Path], str] = str,
    on_leak: str = "fail",
    on_label_conflict: str = "fail",
    unused_splits: tuple[str, ...] = (),
) -> Clashes:
    """Apply the policies for exact copies that make a run wrong before it starts.

    A *label conflict* is one image (the same bytes) under two labels: at most one label is right, and
    both copies may land in the test split. ``fail`` refuses with the files named; ``drop`` leaves every
    copy out. A *leak* is one image in train and in val or test (given splits; a carved split keeps
    copies together): the test score then counts memorised images. ``fail`` refuses; ``drop`` leaves the
    training copies out, so val and test stay as given; ``keep`` trains anyway with a warning that the
    run records in metrics.json and its report. A copy in one of ``unused_splits`` (given splits the run
    will not use, such as cross-validation's test/) is no leak. ``name`` turns a path into what messages show.
    """
    if on_leak not in LEAK_POLICIES:
        raise CnnlabError(f"data.on_leak must be one of {', '.join(LEAK_POLICIES)}, got {on_leak!r}")
    if on_label_conflict not in CONFLICT_POLICIES:
        raise CnnlabError(
            f"data.on_label_conflict must be one of {', '.join(CONFLICT_POLICIES)}, got {on_label_conflict!r}"
        )
    show = lambda i: f"{name(i[1])} ({classes[i[2]]})"  # noqa: E731
    conflicts = [g for g in _copies(splits, fingerprints) if len({y for _, _, y in g}) > 1]
    if conflicts and on_label_conflict == "fail":
        raise CnnlabError(
            f"{len(conflicts)} image(s) are saved under two labels (the same bytes): {_listing(conflicts, show)}. "
            "At most one label is right: keep one copy, in its class, or pass --data.on_label_conflict drop to "
            "leave every copy out ('cnnlab data check' lists them all)."
        )
    out = Clashes(splits)
    for g in conflicts:
        labels = " and ".join(sorted({repr(classes[y]) for _, _, y in g}))
        out.left_out += [(name(p), f"label conflict: the same image is labelled {labels}") for _, p, _ in g]
    gone = {(s, p) for g in conflicts for s, p, _ in g}
    out.splits = {s: [(p, y) for p, y in v if (s, p) not in gone] for s, v in splits.items()}
    _resolve_leaks(out, fingerprints, name, on_leak, unused_splits)
    return out


def _resolve_leaks(out: Clashes, fingerprints: dict[Path, Fingerprint], name, on_leak: str, unused=()) -> None:
    """The leak half of :func:`resolve_clashes`, on the splits left after label conflicts."""
    used = {s: v for s, v in out.splits.items() if s not in unused}
    spans = [(g, {s for s, _, _ in g}) for g in _copies(used, fingerprints)]
    leaks = [g for g, splits in spans if "train" in splits and len(splits) > 1]
    if not leaks:
        return
    show = lambda i: name(i[1]) if name(i[1]).startswith(f"{i[0]}/") else f"{name(i[1])} ({i[0]})"  # noqa: E731
    held = sorted({s for g in leaks for s, _, _ in g} - {"train"})
    where = " and ".join(held)
    if on_leak == "fail":
        raise CnnlabError(
            f"{len(leaks)} image(s) of the {where} split are also in train (the same bytes): "
            f"{_listing(leaks, show)}. The {where} score would count images the model trained on. Remove the "
            "training copies, or pass --data.on_leak drop to train without them, or --data.on_leak keep to "
            "train anyway (metrics.json and the report then carry a warning)."
        )
    if on_leak == "drop":
        gone = {p for g in leaks for s, p, _ in g if s == "train"}
        out.left_out += [(name(p), f"leak: a copy of a {where} image") for p in sorted(gone)]
        out.splits = {s: [(p, y) for p, y in v if s != "train" or p not in gone] for s, v in out.splits.items()}
        return
    out.warnings.append(
        f"{len(leaks)} image(s) of the {where} split are also in train (data.on_leak keep): "
        f"{_listing(leaks, show)}; the {where} metrics overstate how the model does on new images"
    )
