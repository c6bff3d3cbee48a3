"""Tests for the bundled MNIST sample and the script that builds it (scripts/build_mnist_sample.py)."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import sources

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CNNLAB_SHARED_DATA") or REPO / ".." / "shared" / "data")


def load_build_script():
    spec = importlib.util.spec_from_file_location("build_mnist_sample", REPO / "scripts" / "build_mnist_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sample() -> dict:
    return sources.load_mnist_sample()


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads(resources.files("cnnlab.data").joinpath("sample", sources.SAMPLE_JSON).read_text())


def test_sample_shapes_dtypes_and_per_class_counts(sample):
    assert sample["train_images"].shape == (6000, 28, 28, 1) and sample["test_images"].shape == (1000, 28, 28, 1)
    assert sample["train_images"].dtype == np.uint8 and sample["train_labels"].dtype == np.int64
    np.testing.assert_array_equal(np.bincount(sample["train_labels"], minlength=10), [600] * 10)
    np.testing.assert_array_equal(np.bincount(sample["test_labels"], minlength=10), [100] * 10)
    assert sample["classes"] == [str(i) for i in range(10)]
    assert "6,000 train + 1,000 test" in sample["note"]  # says it is a subset, with the real counts
    assert sample["train_images"].max() == 255 and sample["train_images"].min() == 0  # real 8-bit digits


def test_sample_indices_are_unique_sorted_and_in_range(sample):
    for key, n in (("train_indices", 60000), ("test_indices", 10000)):
        idx = sample[key]
        assert np.all(np.diff(idx) > 0) and idx[0] >= 0 and idx[-1] < n


def test_sample_record_matches_the_npz(sample, record):
    npz = resources.files("cnnlab.data").joinpath("sample", sources.SAMPLE_NPZ).read_bytes()
    assert hashlib.sha256(npz).hexdigest() == record["npz_sha256"]
    for name, md5 in record["source_files"].items():
        assert sources.EXPECTED_MD5[f"MNIST/raw/{name}"] == md5  # built from the official files
    for key, digest in record["indices_sha256"].items():
        assert hashlib.sha256(sample[key].tobytes()).hexdigest() == digest
    counts = {split: [record["counts_per_class"][split][str(c)] for c in range(10)] for split in ("train", "test")}
    assert counts == {"train": [600] * 10, "test": [100] * 10}


def write_tiny_mnist(root: Path, n_train: int = 40, n_test: int = 20) -> dict:
    """The four official-format .gz files of a tiny MNIST (every class present); returns the arrays."""
    rng = np.random.default_rng(3)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for key, name in sources.IDX_FILES.items():
        a = arrays[key]
        header = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
        (raw / name).write_bytes(gzip.compress(header + a.tobytes(), mtime=0))
    return arrays


def test_build_script_is_deterministic_and_takes_the_recorded_rows(tmp_path, monkeypatch):
    arrays = write_tiny_mnist(tmp_path / "src")
    table = dict(sources.EXPECTED_MD5)
    for name in sources.IDX_FILES.values():
        table[f"MNIST/raw/{name}"] = sources.md5sum(tmp_path / "src" / "MNIST" / "raw" / name)
    monkeypatch.setattr(sources, "EXPECTED_MD5", table)
    build = load_build_script()
    args = ["--source", str(tmp_path / "src"), "--per-class-train", "3", "--per-class-test", "1", "--seed", "7"]
    assert build.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert build.main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = (tmp_path / "a" / sources.SAMPLE_NPZ).read_bytes(), (tmp_path / "b" / sources.SAMPLE_NPZ).read_bytes()
    assert a == b  # byte-identical, not just equal arrays
    with np.load(tmp_path / "a" / sources.SAMPLE_NPZ) as z:
        np.testing.assert_array_equal(z["train_images"][..., 0], arrays["train_images"][z["train_indices"]])
        np.testing.assert_array_equal(z["test_labels"], arrays["test_labels"][z["test_indices"]])
        np.testing.assert_array_equal(np.bincount(z["train_labels"]), [3] * 10)
    rec = json.loads((tmp_path / "a" / sources.SAMPLE_JSON).read_text())
    assert rec["seed"] == 7 and "--per-class-train 3" in rec["command"]
    assert rec["source_files"]["train-images-idx3-ubyte.gz"] == table["MNIST/raw/train-images-idx3-ubyte.gz"]
    other = build.stratified_indices(arrays["train_labels"], 3, np.random.default_rng(8))
    with np.load(tmp_path / "a" / sources.SAMPLE_NPZ) as z:
        assert not np.array_equal(other, z["train_indices"])  # the seed matters


@pytest.mark.data
@pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="../shared/data is absent")
def test_sample_equals_official_mnist_at_recorded_indices(sample, record):
    mnist = sources.load_idx_dataset("mnist", SHARED)
    for split in ("train", "test"):
        idx = sample[f"{split}_indices"]
        np.testing.assert_array_equal(sample[f"{split}_images"], mnist[f"{split}_images"][idx])
        np.testing.assert_array_equal(sample[f"{split}_labels"], mnist[f"{split}_labels"][idx])
    for name, md5 in record["source_files"].items():
        assert sources.md5sum(SHARED / "MNIST" / "raw" / name) == md5
