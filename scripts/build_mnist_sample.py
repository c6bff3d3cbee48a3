"""Build the bundled MNIST sample: a seeded, stratified subset of the official MNIST files.

Takes ``--per-class-train`` (600) and ``--per-class-test`` (100) images of every digit from the
official IDX ``.gz`` files in ``SOURCE/MNIST/raw/`` (md5-checked by the reader), and writes

* ``mnist_sample.npz``: train/test images uint8 (N, 28, 28, 1), labels int64, and the indices into
  the official train/test arrays that each sample image came from (``train_indices``, ``test_indices``);
* ``mnist_sample.json``: source file names and md5s, seed, counts per class, where the indices are,
  a sha256 of the npz, the command and the date.

The npz is byte-for-byte reproducible: the same seed gives the same indices, and the zip entries
carry a fixed timestamp (``np.savez_compressed`` would stamp the current time).

Usage (from the repository root)::

    python scripts/build_mnist_sample.py --source ../shared/data --out src/cnnlab/data/sample
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

try:
    from cnnlab.data import sources
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from cnnlab.data import sources

FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # earliest time a zip entry can hold; makes the bytes reproducible


def stratified_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` indices of each class drawn without replacement, returned in source order."""
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise SystemExit(f"class {c} has only {len(idx)} images, fewer than {per_class}")
        picked.append(rng.choice(idx, size=per_class, replace=False))
    return np.sort(np.concatenate(picked))


def write_npz_reproducible(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed (np.load reads it), but with fixed zip timestamps and entry order."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)


def build(source: Path, out: Path, seed: int, per_train: int, per_test: int, command: str) -> dict:
    """Select, write the npz and json, and return the json record."""
    mnist = sources.load_idx_dataset("mnist", source)  # verifies the md5s of the four .gz files
    rng = np.random.default_rng(seed)
    train_idx = stratified_indices(mnist["train_labels"], per_train, rng)
    test_idx = stratified_indices(mnist["test_labels"], per_test, rng)
    arrays = {
        "train_images": mnist["train_images"][train_idx],  # (6000, 28, 28, 1) uint8
        "train_labels": mnist["train_labels"][train_idx],  # (6000,) int64
        "test_images": mnist["test_images"][test_idx],
        "test_labels": mnist["test_labels"][test_idx],
        "train_indices": train_idx.astype(np.int64),  # rows of the official train arrays
        "test_indices": test_idx.astype(np.int64),  # rows of the official t10k arrays
    }
    out.mkdir(parents=True, exist_ok=True)
    npz = out / sources.SAMPLE_NPZ
    write_npz_reproducible(npz, arrays)
    raw = source / "MNIST" / "raw"
    record = {
        "dataset": "MNIST (LeCun, Cortes, Burges), official IDX files",
        "source_files": {name: sources.md5sum(raw / name) for name in sorted(sources.IDX_FILES.values())},
        "seed": seed,
        "selection": "numpy.random.default_rng(seed); per class, rng.choice(without replacement) over the "
        "class's rows, train first then test, classes in order 0..9; indices sorted",
        "counts_per_class": {
            "train": {str(c): int(n) for c, n in enumerate(np.bincount(arrays["train_labels"], minlength=10))},
            "test": {str(c): int(n) for c, n in enumerate(np.bincount(arrays["test_labels"], minlength=10))},
        },
        "indices": "mnist_sample.npz keys train_indices / test_indices (rows of train-images / t10k-images)",
        "indices_sha256": {
            k: hashlib.sha256(arrays[k].tobytes()).hexdigest() for k in ("train_indices", "test_indices")
        },
        "npz_sha256": hashlib.sha256(npz.read_bytes()).hexdigest(),
        "npz_bytes": npz.stat().st_size,
        "command": command,
        "built": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    (out / sources.SAMPLE_JSON).write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="data root holding MNIST/raw/*.gz")
    parser.add_argument("--out", type=Path, default=Path("src/cnnlab/data/sample"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class-train", type=int, default=600)
    parser.add_argument("--per-class-test", type=int, default=100)
    args = parser.parse_args(argv)
    command = "python scripts/build_mnist_sample.py " + " ".join(sys.argv[1:] if argv is None else argv)
    record = build(args.source, args.out, args.seed, args.per_class_train, args.per_class_test, command)
    print(f"wrote {args.out / sources.SAMPLE_NPZ} ({record['npz_bytes']:,} bytes, sha256 {record['npz_sha256'][:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
