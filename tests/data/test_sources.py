"""Tests for cnnlab.data.sources: the real IDX / CIFAR-pickle / JPEG-tar readers on tiny files built here.

Each test writes small files in the official formats, points the module's md5 table at them and runs
the real parsing code, so no network and no ../shared data are needed. Tests marked ``data`` read
the real datasets from ../shared/data (or $CNNLAB_SHARED_DATA) and are skipped without them.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import http.server
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import sources
from cnnlab.errors import CnnlabError

SHARED = Path(os.environ.get("CNNLAB_SHARED_DATA") or Path(__file__).resolve().parents[2] / ".." / "shared" / "data")
needs_shared = pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="../shared/data is absent")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def idx_bytes(arr: np.ndarray) -> bytes:
    """Serialise ``arr`` in the IDX format (magic 00 00 type ndim, big-endian sizes, big-endian data)."""
    codes = {np.dtype(np.uint8): (0x08, ">u1"), np.dtype(np.int32): (0x0C, ">i4"), np.dtype(np.float32): (0x0D, ">f4")}
    code, be = codes[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(be).tobytes()


def write_gz(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, mtime=0))
    return path


def make_idx_tree(root: Path, folder: str, n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict:
    """Write the four official .gz files of a tiny MNIST-like dataset; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for key, name in sources.IDX_FILES.items():
        write_gz(root / folder / "raw" / name, idx_bytes(arrays[key]))
    return arrays


@pytest.fixture
def patch_md5(monkeypatch):
    """Return a function that makes the module expect the md5 of the given files (keyed relative to root)."""
    table = dict(sources.EXPECTED_MD5)
    monkeypatch.setattr(sources, "EXPECTED_MD5", table)

    def patch(root: Path, *paths: Path) -> None:
        for p in paths:
            table[p.relative_to(root).as_posix()] = md5(p)

    return patch


def tree_state(root: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# ------------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_read_idx_round_trips_gz_and_raw(tmp_path, dtype):
    arr = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = tmp_path / "x-idx3-ubyte"
    raw.write_bytes(idx_bytes(arr))
    gz = write_gz(tmp_path / "x-idx3-ubyte.gz", idx_bytes(arr))
    for path in (raw, gz):
        out = sources.read_idx(path)
        assert out.shape == arr.shape and out.dtype == arr.dtype and out.dtype.isnative
        np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize(
    "payload, words",
    [
        (b"\x08\x08\x08\x01\x00\x00\x00\x02ab", "magic"),  # first bytes must be zero
        (b"\x00\x00\x07\x01\x00\x00\x00\x02ab", "magic"),  # 0x07 is no IDX type
        (b"\x00\x00", "magic"),  # too short
        (b"\x00\x00\x08\x03\x00\x00", "header"),  # header cut off
        (idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-10], "truncated"),
        (idx_bytes(np.zeros((4,), np.uint8)) + b"extra", "truncated"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path, payload, words):
    path = write_gz(tmp_path / "bad-idx.gz", payload)
    with pytest.raises(CnnlabError, match=words) as info:
        sources.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_a_file_that_is_not_gzip(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(CnnlabError, match="cannot read IDX file"):
        sources.read_idx(path)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_load_idx_dataset_parses_the_official_layout(tmp_path, patch_md5, name, folder):
    arrays = make_idx_tree(tmp_path, folder)
    patch_md5(tmp_path, *(tmp_path / folder / "raw").iterdir())
    before = tree_state(tmp_path)
    d = sources.load_idx_dataset(name, tmp_path)
    assert tree_state(tmp_path) == before  # nothing written into the root
    for split, n in (("train", 12), ("test", 5)):
        assert d[f"{split}_images"].shape == (n, 28, 28, 1) and d[f"{split}_images"].dtype == np.uint8
        assert d[f"{split}_labels"].dtype == np.int64
        np.testing.assert_array_equal(d[f"{split}_images"][..., 0], arrays[f"{split}_images"])
        np.testing.assert_array_equal(d[f"{split}_labels"], arrays[f"{split}_labels"])
    assert d["classes"] == sources.IDX_DATASETS[name]["classes"] and len(d["classes"]) == 10


def test_idx_arrays_are_cached_and_the_md5_is_still_checked(tmp_path, patch_md5, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    arrays = make_idx_tree(tmp_path / "root", "MNIST")
    raw = tmp_path / "root" / "MNIST" / "raw"
    patch_md5(tmp_path / "root", *raw.iterdir())
    first = sources.load_idx_dataset("mnist", tmp_path / "root")
    assert len(list((tmp_path / "cache").glob("mnist-idx-*.npz"))) == 1

    def no_decoding(path):
        raise AssertionError("the second load must come from the cache")

    real_read_idx = sources.read_idx
    monkeypatch.setattr(sources, "read_idx", no_decoding)
    again = sources.load_idx_dataset("mnist", tmp_path / "root")
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(again[key], first[key])
    np.testing.assert_array_equal(again["test_images"][..., 0], arrays["test_images"])
    write_gz(raw / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(5, np.uint8)))  # replaced, md5 not updated
    with pytest.raises(CnnlabError, match="md5"):
        sources.load_idx_dataset("mnist", tmp_path / "root")
    patch_md5(tmp_path / "root", *raw.iterdir())
    monkeypatch.setattr(sources, "read_idx", real_read_idx)
    changed = sources.load_idx_dataset("mnist", tmp_path / "root")  # a new key: decoded afresh
    assert not changed["test_labels"].any() and len(list((tmp_path / "cache").glob("mnist-idx-*.npz"))) == 2


def test_fashion_mnist_class_names_match_torchvision():
    assert sources.FASHION_MNIST_CLASSES[0] == "T-shirt/top" and sources.FASHION_MNIST_CLASSES[-1] == "Ankle boot"
    assert sources.IDX_DATASETS["mnist"]["classes"] == [str(i) for i in range(10)]


def test_load_idx_dataset_accepts_extracted_files(tmp_path):
    arrays = make_idx_tree(tmp_path, "MNIST")
    for gz in list((tmp_path / "MNIST" / "raw").glob("*.gz")):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    d = sources.load_idx_dataset("mnist", tmp_path)
    np.testing.assert_array_equal(d["test_images"][..., 0], arrays["test_images"])


def test_md5_mismatch_names_the_file(tmp_path, patch_md5):
    make_idx_tree(tmp_path, "MNIST")
    raw = tmp_path / "MNIST" / "raw"
    patch_md5(tmp_path, *raw.iterdir())
    write_gz(raw / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.ones(5, np.uint8)))  # changed after the md5 was taken
    with pytest.raises(CnnlabError, match="t10k-labels-idx1-ubyte.gz.*md5"):
        sources.load_idx_dataset("mnist", tmp_path)


def test_mismatched_image_and_label_counts_are_refused(tmp_path, patch_md5):
    make_idx_tree(tmp_path, "MNIST")
    raw = tmp_path / "MNIST" / "raw"
    write_gz(raw / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.ones(4, np.uint8)))  # 5 images, 4 labels
    patch_md5(tmp_path, *raw.iterdir())
    with pytest.raises(CnnlabError, match=r"images \(5, 28, 28\).*labels \(4,\)"):
        sources.load_idx_dataset("mnist", tmp_path)


def test_missing_files_offline_message_lists_files_md5s_and_folder(tmp_path):
    with pytest.raises(CnnlabError) as info:
        sources.load_idx_dataset("fashion-mnist", tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in msg
    for name in sources.IDX_FILES.values():
        assert name in msg and sources.EXPECTED_MD5[f"FashionMNIST/raw/{name}"] in msg


def test_download_failure_offline_message(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(CnnlabError) as info:
        sources.load_idx_dataset("mnist", tmp_path, download=True)
    msg = str(info.value)
    assert "offline" in msg and "no route to host" in msg
    assert str(tmp_path / "MNIST" / "raw") in msg
    for name in sources.IDX_FILES.values():
        assert name in msg
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # no partial files left behind


def test_unknown_names_are_refused(tmp_path):
    with pytest.raises(CnnlabError, match="mnist"):
        sources.load_idx_dataset("emnist", tmp_path)
    with pytest.raises(CnnlabError, match="cifar10"):
        sources.load_cifar("cifar20", tmp_path)


# ------------------------------------------------------------------------------------- download


def test_download_from_file_url_verifies_md5_and_renames(tmp_path):
    src = tmp_path / "src" / "blob.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(3 * (1 << 20) + 7))  # several read blocks
    dest = tmp_path / "dl" / "blob.bin"
    assert sources.download(src.as_uri(), dest, md5(src)) == dest
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["blob.bin"]  # the temp file was renamed away


def test_download_md5_mismatch_keeps_nothing(tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(b"payload")
    dest = tmp_path / "dl" / "blob.bin"
    with pytest.raises(CnnlabError, match="md5"):
        sources.download(src.as_uri(), dest, "0" * 32)
    assert list(dest.parent.iterdir()) == []


def test_download_of_a_missing_url_says_where_to_put_the_file(tmp_path):
    dest = tmp_path / "dl" / "thing.gz"
    with pytest.raises(CnnlabError) as info:
        sources.download((tmp_path / "absent.gz").as_uri(), dest, "ab" * 16)
    msg = str(info.value)
    assert "thing.gz" in msg and "ab" * 16 in msg and str(dest.parent) in msg
    assert list(dest.parent.iterdir()) == []


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/'served'; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None  # keep the test output clean
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_load_idx_dataset_downloads_from_a_mirror_over_http(tmp_path, http_server, patch_md5, monkeypatch):
    served, url = http_server
    arrays = make_idx_tree(served, "MNIST")
    for p in (served / "MNIST" / "raw").iterdir():
        p.rename(served / p.name)
    root = tmp_path / "root"
    table = sources.EXPECTED_MD5
    for name in sources.IDX_FILES.values():
        table[f"MNIST/raw/{name}"] = md5(served / name)
    spec = {**sources.IDX_DATASETS["mnist"], "mirrors": [url + "missing/", url]}  # first mirror 404s
    monkeypatch.setitem(sources.IDX_DATASETS, "mnist", spec)
    d = sources.load_idx_dataset("mnist", root, download=True)
    np.testing.assert_array_equal(d["train_labels"], arrays["train_labels"])
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(sources.IDX_FILES.values())


# ----------------------------------------------------------------------------------------- CIFAR


class Py2Pickler(pickle._Pickler):
    """Writes bytes and str as Python 2 byte strings (BINSTRING), as in the official CIFAR batches.

    The official files were pickled by Python 2, so their keys and names are byte strings that
    ``encoding="bytes"`` turns into ``bytes``; Python 3's own protocol-2 pickles differ (they store
    bytes through ``_codecs.encode``), so the tests write the Python 2 opcodes themselves.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj: bytes | str) -> None:
        raw = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string


def cifar_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # NumPy 2 names its module numpy._core; the 2009 files say numpy.core
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def make_cifar_members(name: str, n_per_batch: int = 4, seed: int = 0) -> tuple[dict, dict]:
    """Members (base name -> pickle bytes) of a tiny CIFAR python-version archive, plus the arrays used."""
    spec = sources.CIFAR_DATASETS[name]
    rng = np.random.default_rng(seed)
    n_classes = 10 if name == "cifar10" else 100
    members, truth = {}, {"train": [], "test": []}
    for split in ("train", "test"):
        for k, member in enumerate(spec[split]):
            data = rng.integers(0, 256, (n_per_batch + k, 3072), dtype=np.uint8)  # batches of different sizes
            labels = rng.integers(0, n_classes, n_per_batch + k).tolist()
            batch = {"batch_label": member, "data": data, spec["labels_key"].decode(): labels}
            if name == "cifar100":
                batch["coarse_labels"] = [lab // 5 for lab in labels]
            members[member] = cifar_pickle(batch)
            truth[split].append((data, labels))
    meta = {spec["names_key"].decode(): [f"class_{i:03d}" for i in range(n_classes)]}  # py2 str, like the originals
    if name == "cifar100":
        meta["coarse_label_names"] = [f"super_{i}" for i in range(20)]
    members[spec["meta"]] = cifar_pickle(meta)
    return members, truth


def write_cifar_tarball(root: Path, name: str, members: dict) -> Path:
    spec = sources.CIFAR_DATASETS[name]
    path = root / spec["archive"]
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for base, payload in members.items():
            info = tarfile.TarInfo(f"{spec['folder']}/{base}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def check_cifar(d: dict, truth: dict, n_classes: int) -> None:
    for split in ("train", "test"):
        data = np.concatenate([t[0] for t in truth[split]])
        labels = np.concatenate([t[1] for t in truth[split]])
        images = d[f"{split}_images"]
        assert images.shape == (len(data), 32, 32, 3) and images.dtype == np.uint8
        # the row layout is 1024 red, then 1024 green, then 1024 blue values, each row-major
        for c in range(3):
            np.testing.assert_array_equal(images[:, :, :, c].reshape(len(data), -1), data[:, c * 1024 : (c + 1) * 1024])
        np.testing.assert_array_equal(d[f"{split}_labels"], labels)
        assert d[f"{split}_labels"].dtype == np.int64
    assert d["classes"] == [f"class_{i:03d}" for i in range(n_classes)]


@pytest.mark.parametrize("name, n_classes", [("cifar10", 10), ("cifar100", 100)])
def test_load_cifar_reads_the_python_tarball_without_extracting(tmp_path, patch_md5, name, n_classes):
    members, truth = make_cifar_members(name)
    archive = write_cifar_tarball(tmp_path, name, members)
    patch_md5(tmp_path, archive)
    before = tree_state(tmp_path)
    d = sources.load_cifar(name, tmp_path)
    assert tree_state(tmp_path) == before
    check_cifar(d, truth, n_classes)
    assert "note" not in d


def test_load_cifar_reads_torchvisions_extracted_folder(tmp_path):
    members, truth = make_cifar_members("cifar100")
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for base, payload in members.items():
        (folder / base).write_bytes(payload)
    check_cifar(sources.load_cifar("cifar100", tmp_path), truth, 100)


def test_load_cifar_md5_mismatch_names_the_archive(tmp_path):
    archive = write_cifar_tarball(tmp_path, "cifar10", make_cifar_members("cifar10")[0])
    with pytest.raises(CnnlabError, match="cifar-10-python.tar.gz.*md5"):
        sources.load_cifar("cifar10", tmp_path)
    assert archive.is_file()  # a user's file is reported, never deleted


def test_cifar_batches_that_would_run_code_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    members, _ = make_cifar_members("cifar100")
    members["train"] = pickle.dumps({b"data": Evil()}, protocol=2)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for base, payload in members.items():
        (folder / base).write_bytes(payload)
    with pytest.raises(CnnlabError, match="refusing to load"):
        sources.load_cifar("cifar100", tmp_path)


def test_load_cifar_offline_message(tmp_path):
    with pytest.raises(CnnlabError) as info:
        sources.load_cifar("cifar10", tmp_path)
    msg = str(info.value)
    assert "cifar-10-python.tar.gz" in msg and sources.EXPECTED_MD5["cifar-10-python.tar.gz"] in msg
    assert str(tmp_path) in msg and "cifar-10-batches-py" in msg and "cifar10-jpeg" in msg


# ---------------------------------------------------------------------------------- JPEG copy


def write_jpeg_tar(path: Path, split: str, images: dict[str, list[np.ndarray]]) -> None:
    """A tar with ``split/<class>/NNNN.jpg`` members (added in a shuffled order, as in the real copy)."""
    entries = [(cls, i, img) for cls, imgs in images.items() for i, img in enumerate(imgs)]
    entries = entries[::-1]  # reader must sort by (class, file name), not trust tar order
    with tarfile.open(path, "w") as tar:
        for cls, i, img in entries:
            buf = io.BytesIO()
            Image.fromarray(img.squeeze()).save(buf, format="JPEG", quality=95)
            info = tarfile.TarInfo(f"{split}/{cls}/{i:04d}.jpg")
            info.size = buf.tell()
            buf.seek(0)
            tar.addfile(info, buf)


def flat(color: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(color, np.uint8), (32, 32, 3)).copy()


@pytest.fixture
def jpeg_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "root" / "cifar10-jpeg"
    folder.mkdir(parents=True)
    train = {"bird": [flat((200, 20, 20)), flat((20, 200, 20))], "airplane": [flat((20, 20, 200))]}
    test = {"airplane": [flat((90, 90, 90))], "bird": [np.full((32, 32), 60, np.uint8)]}  # one grayscale JPEG
    write_jpeg_tar(folder / "train.tar", "train", train)
    write_jpeg_tar(folder / "test.tar", "test", test)
    return folder


def test_jpeg_copy_decodes_in_label_order_and_caches(jpeg_copy, tmp_path, monkeypatch):
    d = sources.load_cifar("cifar10", jpeg_copy.parent)  # no archive: falls back to the JPEG copy
    assert d["classes"] == ["airplane", "bird"] and d["note"] == sources.JPEG_NOTE
    assert d["train_images"].shape == (3, 32, 32, 3) and d["train_images"].dtype == np.uint8
    np.testing.assert_array_equal(d["train_labels"], [0, 1, 1])
    expected = np.stack([flat((20, 20, 200)), flat((200, 20, 20)), flat((20, 200, 20))]).astype(int)
    assert np.abs(d["train_images"].astype(int) - expected).max() <= 3  # JPEG error on flat colours is tiny
    np.testing.assert_array_equal(d["test_labels"], [0, 1])
    assert np.abs(d["test_images"][1].astype(int) - 60).max() <= 3  # grayscale expanded to 3 equal channels
    assert len(list((tmp_path / "cache").glob("cifar10-jpeg-*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("the second load must come from the cache")

    monkeypatch.setattr(sources, "_decode_jpeg_tar", no_decoding)
    again = sources.load_cifar10_jpeg(jpeg_copy)
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(again[key], d[key])
    assert again["classes"] == d["classes"] and again["note"] == d["note"]


def test_jpeg_cache_is_rebuilt_when_the_tar_changes(jpeg_copy):
    first = sources._jpeg_cache_path([jpeg_copy / "train.tar", jpeg_copy / "test.tar"])
    st = (jpeg_copy / "test.tar").stat()
    os.utime(jpeg_copy / "test.tar", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert sources._jpeg_cache_path([jpeg_copy / "train.tar", jpeg_copy / "test.tar"]) != first


def test_jpeg_copy_with_a_broken_image_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    with tarfile.open(tmp_path / "train.tar", "w") as tar:
        info = tarfile.TarInfo("train/cat/0001.jpg")
        info.size = 10
        tar.addfile(info, io.BytesIO(b"\xff\xd8garbage!"))
    write_jpeg_tar(tmp_path / "test.tar", "test", {"cat": [flat((1, 2, 3))]})
    with pytest.raises(CnnlabError, match="train/cat/0001.jpg"):
        sources.load_cifar10_jpeg(tmp_path)


# ------------------------------------------------------------------------------- digits, paths


def test_load_digits_scaled_and_split_stratified_and_seeded():
    d = sources.load_digits()
    assert d["train_images"].shape[1:] == (8, 8, 1) and d["train_images"].dtype == np.uint8
    assert len(d["train_labels"]) + len(d["test_labels"]) == 1797
    assert d["train_images"].max() == 255 and d["train_images"].min() == 0
    assert "no official train/test split" in d["note"] and "80%/20%" in d["note"]
    assert not set(d["train_indices"]) & set(d["test_indices"])
    counts = np.bincount(d["test_labels"], minlength=10) / np.bincount(
        np.concatenate([d["train_labels"], d["test_labels"]]), minlength=10
    )
    assert np.all(np.abs(counts - 0.2) < 0.01)  # every class is split 80/20
    np.testing.assert_array_equal(sources.load_digits()["test_indices"], d["test_indices"])
    assert not np.array_equal(sources.load_digits(seed=1)["test_indices"], d["test_indices"])


def test_default_root_and_cache_dir_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "c"))
    assert sources.default_root() == tmp_path / "d" and sources.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CNNLAB_DATA")
    assert sources.default_root() == Path.home() / ".cache" / "cnnlab" / "data"


def test_md5sum_matches_hashlib(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(os.urandom(2 * (1 << 20) + 3))
    assert sources.md5sum(p) == hashlib.md5(p.read_bytes()).hexdigest()


def test_sources_does_not_import_torch():
    code = "import sys, cnnlab.data.sources; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------ real datasets


@pytest.mark.data
@needs_shared
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_idx_datasets_load_with_verified_md5(name):
    d = sources.load_idx_dataset(name, SHARED)  # md5 of all four files checked inside
    assert d["train_images"].shape == (60000, 28, 28, 1) and d["test_images"].shape == (10000, 28, 28, 1)
    assert np.array_equal(np.bincount(d["test_labels"], minlength=10) > 0, np.ones(10, bool))
    assert d["train_labels"].max() == 9 and len(d["classes"]) == 10


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "cifar10-jpeg" / "train.tar").is_file(), reason="../shared/data is absent")
def test_real_cifar10_jpeg_copy():
    d = sources.load_cifar("cifar10", SHARED)  # first run decodes (~10 s), later runs hit the user cache
    assert d["train_images"].shape == (50000, 32, 32, 3) and d["test_images"].shape == (10000, 32, 32, 3)
    assert d["classes"] == sources.CIFAR10_CLASSES
    np.testing.assert_array_equal(np.bincount(d["train_labels"]), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(d["test_labels"]), [1000] * 10)
    assert "JPEG" in d["note"]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_scanner_agrees_with_tarfile(tmp_path, fmt):
    long_dir = "train/" + "c" * 60 + "/" + "d" * 50  # > 100 chars: ustar prefix field, GNU/pax long names
    names = ["train/cat/0001.jpg", f"{long_dir}/0002.jpg", "train/dog/0003.jpg"]
    path = tmp_path / "x.tar"
    with tarfile.open(path, "w", format=fmt) as tar:
        for k, name in enumerate(names):
            payload = os.urandom(100 + 600 * k)
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    raw = path.read_bytes()
    with tarfile.open(path) as tar:
        expected = [(m.name, m.offset_data, m.size) for m in tar.getmembers() if m.isfile()]
    assert sources._tar_files(raw) == expected
    corrupt = bytearray(raw)
    corrupt[10] ^= 0xFF  # breaks the first header's checksum: the fast scanner must not trust it
    assert sources._scan_ustar(bytes(corrupt)) is None


def test_idx_files_with_the_wrong_type_or_labels_are_refused(tmp_path, patch_md5):
    make_idx_tree(tmp_path, "MNIST")
    raw = tmp_path / "MNIST" / "raw"
    write_gz(raw / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.full(5, 10, np.uint8)))  # label 10 of 0..9
    patch_md5(tmp_path, *raw.iterdir())
    with pytest.raises(CnnlabError, match="not MNIST-like"):
        sources.load_idx_dataset("mnist", tmp_path)
    write_gz(raw / "t10k-images-idx3-ubyte.gz", idx_bytes(np.zeros((5, 28, 28), np.float32)))
    write_gz(raw / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(5, np.uint8)))
    patch_md5(tmp_path, *raw.iterdir())
    with pytest.raises(CnnlabError, match="float32"):
        sources.load_idx_dataset("mnist", tmp_path)


def test_download_md5_mismatch_on_every_mirror_is_not_called_offline(tmp_path, http_server, monkeypatch):
    served, url = http_server
    for name in sources.IDX_FILES.values():
        (served / name).write_bytes(b"not the official bytes")
    monkeypatch.setitem(sources.IDX_DATASETS, "mnist", {**sources.IDX_DATASETS["mnist"], "mirrors": [url]})
    with pytest.raises(CnnlabError) as info:
        sources.load_idx_dataset("mnist", tmp_path, download=True)
    msg = str(info.value)
    assert "md5" in msg and "offline?" not in msg and "train-images-idx3-ubyte.gz" in msg
    assert not any(p.is_file() for p in (tmp_path / "MNIST").rglob("*"))


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda b: {b"data": b[b"data"]}, "not a CIFAR batch"),  # labels missing
        (lambda b: {**b, b"labels": b[b"labels"][:-1]}, "labels of shape"),
        (lambda b: {**b, b"labels": [10] * len(b[b"labels"])}, "outside 0..9"),
        (lambda b: {**b, b"data": b[b"data"][:, :100]}, "expected \\(N, 3072\\)"),
        (lambda b: [1, 2, 3], "not a CIFAR batch"),
    ],
)
def test_malformed_cifar_batches_are_refused(tmp_path, patch_md5, change, words):
    members, _ = make_cifar_members("cifar10")
    batch = pickle.loads(members["data_batch_2"], encoding="bytes")
    members["data_batch_2"] = cifar_pickle(change(batch))
    patch_md5(tmp_path, write_cifar_tarball(tmp_path, "cifar10", members))
    with pytest.raises(CnnlabError, match=words):
        sources.load_cifar("cifar10", tmp_path)


def test_download_into_an_unwritable_place_is_a_clear_error(tmp_path):
    blocker = tmp_path / "root"
    blocker.write_text("a file where the data folder should be")
    src = tmp_path / "blob.bin"
    src.write_bytes(b"x")
    with pytest.raises(CnnlabError, match="cannot write the download of blob.bin"):
        sources.download(src.as_uri(), blocker / "MNIST" / "blob.bin", md5(src))


def test_jpeg_copy_still_loads_when_the_cache_cannot_be_written(jpeg_copy, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("CNNLAB_CACHE", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="could not write the cache"):
        d = sources.load_cifar10_jpeg(jpeg_copy)
    assert d["train_images"].shape == (3, 32, 32, 3)


def test_read_idx_reports_damaged_gzip_data_and_detects_gzip_by_content(tmp_path):
    arr = np.arange(4 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(4, 28, 28)
    good = write_gz(tmp_path / "good.gz", idx_bytes(arr))
    damaged = bytearray(good.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # corrupt the deflate stream (or its CRC)
    (tmp_path / "damaged.gz").write_bytes(bytes(damaged))
    with pytest.raises(CnnlabError, match="damaged.gz"):
        sources.read_idx(tmp_path / "damaged.gz")
    cut = tmp_path / "cut.gz"
    cut.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(CnnlabError, match="cut.gz"):
        sources.read_idx(cut)
    renamed = tmp_path / "train-images-idx3-ubyte"  # gzip content under the extracted name
    renamed.write_bytes(good.read_bytes())
    np.testing.assert_array_equal(sources.read_idx(renamed), arr)


def test_download_cut_off_mid_transfer_keeps_nothing(tmp_path, monkeypatch):
    class CutResponse(io.BytesIO):
        def read(self, n=-1):
            raise http.client.IncompleteRead(b"partial")

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: CutResponse())
    dest = tmp_path / "dl" / "t10k-labels-idx1-ubyte.gz"
    with pytest.raises(CnnlabError, match="offline.*t10k-labels-idx1-ubyte.gz"):
        sources.download("http://example.invalid/t10k-labels-idx1-ubyte.gz", dest, "0" * 32)
    assert list(dest.parent.iterdir()) == []


def test_a_broken_jpeg_cache_file_is_rebuilt(jpeg_copy):
    cache = sources._jpeg_cache_path([jpeg_copy / "train.tar", jpeg_copy / "test.tar"])
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"PK\x03\x04 not really a zip")
    d = sources.load_cifar10_jpeg(jpeg_copy)
    np.testing.assert_array_equal(d["train_labels"], [0, 1, 1])
    with np.load(cache) as z:  # replaced by a good one
        np.testing.assert_array_equal(z["train_labels"], [0, 1, 1])
