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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data.images import SUPPORTED_MODES, ImageReadError, open_image, to_array
from cnnlab.errors import CnnlabError

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
        data = Path(path).read_bytes()
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
            "or pass --on-bad-image skip to train without them."
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
