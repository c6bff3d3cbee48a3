"""Splits, statistics and loaders as training sees them (arrays and image folders)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.config import DataConfig
from cnnlab.data.augment import AUGMENTATIONS, build_augment, hflip, random_crop
from cnnlab.data.datasets import load_dataset
from cnnlab.data.pipeline import convert_arrays, folder_splits, prepare_data
from cnnlab.data.splits import channel_stats, stratified_split
from cnnlab.errors import CnnlabError


def test_stratified_split_is_seeded_and_keeps_class_shares():
    labels = np.repeat(np.arange(4), [100, 50, 20, 3])
    keep, held = stratified_split(labels, 0.2, seed=7)
    again = stratified_split(labels, 0.2, seed=7)
    assert np.array_equal(keep, again[0]) and np.array_equal(held, again[1])
    assert not np.intersect1d(keep, held).size and len(keep) + len(held) == len(labels)
    assert np.bincount(labels[held]).tolist() == [20, 10, 4, 1]  # the 3-sample class still gives one
    assert not np.array_equal(held, stratified_split(labels, 0.2, seed=8)[1])


def test_statistics_come_from_the_train_split_only():
    ds = load_dataset("mnist-sample")
    data = prepare_data(ds, DataConfig(), seed=0, device=torch.device("cpu"))
    keep = [int(s) for split, s, _ in data.split_rows if split == "train"]
    mean, std = channel_stats(ds.train_images[keep])
    assert data.mean == pytest.approx(mean) and data.std == pytest.approx(std)
    all_mean, _ = channel_stats(ds.train_images)
    assert data.mean != pytest.approx(all_mean, abs=1e-9)
    assert data.mean[0] == pytest.approx(0.1307, abs=0.01)  # MNIST's well-known mean


def test_channel_stats_are_exact_for_uint8_images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 9, 7, 3), dtype=np.uint8)
    x[..., 2] = 17  # a constant channel: std 1 so normalising never divides by zero
    mean, std = channel_stats(x, chunk=64)  # several chunks
    ref = x.reshape(-1, 3).astype(np.float64) / 255
    assert mean == pytest.approx(ref.mean(0).tolist(), abs=1e-12)
    assert std[:2] == pytest.approx(ref.std(0)[:2].tolist(), abs=1e-12) and std[2] == 1.0
    with pytest.raises(CnnlabError, match="uint8"):
        channel_stats(x.astype(np.float32))


def test_train_fraction_takes_a_stratified_share_of_the_train_split_only():
    ds = load_dataset("mnist-sample")
    full = prepare_data(ds, DataConfig(), seed=0, device=torch.device("cpu"))
    part = prepare_data(ds, DataConfig(train_fraction=0.25), seed=0, device=torch.device("cpu"))
    assert part.counts["val"] == full.counts["val"] and part.counts["test"] == full.counts["test"]
    share = np.array(part.counts["train"]) / np.array(full.counts["train"])
    assert np.allclose(share, 0.25, atol=0.01)  # every class keeps its quarter
    train_ids = lambda d: {s for split, s, _ in d.split_rows if split == "train"}  # noqa: E731
    assert train_ids(part) < train_ids(full) and part.train.num_samples == sum(part.counts["train"])
    keep = sorted(train_ids(part))
    assert part.mean == pytest.approx(channel_stats(ds.train_images[keep])[0])  # statistics of what trains
    with pytest.raises(cnnlab.CnnlabError, match="train_fraction"):
        prepare_data(ds, DataConfig(train_fraction=0.0), seed=0, device=torch.device("cpu"))


def test_train_fraction_on_a_folder_keeps_every_class():
    from cnnlab.data.datasets import FolderDataset

    items = [(f"c{c}/{i}.png", c) for c in range(3) for i in range(c * 10 + 2)]  # 2, 12 and 22 images
    ds = FolderDataset(name="imgs", root="imgs", classes=["c0", "c1", "c2"], splits={"train": items}, layout="flat")
    splits = folder_splits(ds, DataConfig(val_fraction=0.0, test_fraction=0.0, train_fraction=0.1), seed=0)
    assert sorted({lab for _, lab in splits["train"]}) == [0, 1, 2]
    assert len(splits["train"]) < len(items) / 4


def test_tensor_loader_normalises_and_covers_each_sample_once():
    ds = load_dataset("digits")
    data = prepare_data(ds, DataConfig(batch_size=100, val_fraction=0.1), seed=0, device=torch.device("cpu"))
    xs, ys = zip(*data.train)
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape[1:] == (1, 8, 8) and len(y) == data.train.num_samples
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    assert sorted(torch.bincount(y).tolist()) == sorted(data.counts["train"])


def test_augmentations_keep_shape_range_and_are_reproducible():
    x = torch.rand(16, 3, 32, 32)
    for name in AUGMENTATIONS.names():
        aug = AUGMENTATIONS.create(name)
        if aug is None:
            continue
        a = aug(x.clone(), torch.Generator().manual_seed(1))
        b = aug(x.clone(), torch.Generator().manual_seed(1))
        assert a.shape == x.shape and torch.equal(a, b), name
        assert float(a.min()) >= 0 and float(a.max()) <= 1, name
    assert build_augment("auto", 1) is None and build_augment("auto", 3) is not None


def test_flip_and_crop_do_what_they_say():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    flipped = hflip(x, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(flipped, x.flip(3))
    shifted = random_crop(x, torch.Generator().manual_seed(0), pad=1)
    for i in range(2):  # each output is a translated window of the zero-padded input
        padded = torch.nn.functional.pad(x[i], (1, 1, 1, 1))
        windows = [padded[:, r : r + 4, c : c + 4] for r in range(3) for c in range(3)]
        assert any(torch.equal(shifted[i], w) for w in windows)


def test_channel_and_size_conversion():
    gray = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
    rgb = convert_arrays(gray, 3, None)
    assert rgb.shape == (2, 8, 8, 3) and np.array_equal(rgb[..., 0], gray[..., 0])
    assert np.array_equal(convert_arrays(rgb, 1, None), gray)
    assert convert_arrays(gray, None, 16).shape == (2, 16, 16, 1)


def test_training_on_an_image_folder(tmp_path):
    """A flat folder of class subfolders is split into train/val/test and trains through DataLoader workers."""
    rng = np.random.default_rng(0)
    for c, colour in enumerate([(220, 30, 30), (30, 30, 220)]):
        (tmp_path / "imgs" / f"class{c}").mkdir(parents=True)
        for i in range(20):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / f"class{c}" / f"{i}.png")
    result = cnnlab.train(
        data=f"folder:{tmp_path / 'imgs'}",
        model="seed_cnn",
        epochs=2,
        image_size=16,
        out=tmp_path / "runs",
        overrides={"data.num_workers": 0, "output.progress": False},
        log=lambda s: None,
    )
    rows = (result.run_dir / "split.csv").read_text().splitlines()[1:]
    assert len(rows) == 40 and {r.split(",")[0] for r in rows} == {"train", "val", "test"}
    assert all(not r.split(",")[1].startswith("/") for r in rows)  # paths relative to the folder
    assert result.metrics["num_samples"] == sum(r.startswith("test,") for r in rows)
    assert result.metrics["accuracy"] >= 0.75  # red vs blue is easy
    again = cnnlab.evaluate(result.run_dir, save=False)  # the run's own test files, from split.csv
    assert again["accuracy"] == result.metrics["accuracy"]


def test_a_small_folder_is_decoded_once_into_memory_and_gives_the_batches_files_give(tmp_path):
    """Within ``data.cache_mb`` every split is decoded once and needs no workers; the tensors are the ones
    decoding each epoch gives (so a run is the same bit for bit either way); 0 decodes every epoch."""
    from cnnlab.data.datasets import load_folder

    ds = load_folder(_noise_folder(tmp_path / "imgs", 12, (10, 14), seed=2), image_size=8)
    cfg = dict(batch_size=5, augment="none", num_workers=2)
    memory = prepare_data(ds, DataConfig(**cfg), seed=0, device=torch.device("cpu"))
    files = prepare_data(ds, DataConfig(**cfg, cache_mb=0), seed=0, device=torch.device("cpu"))
    for split in ("train", "val", "test"):
        kept, read = getattr(memory, split), getattr(files, split)
        assert kept.loader.dataset.memory is not None and kept.loader.num_workers == 0
        assert read.loader.dataset.memory is None and read.loader.num_workers == 2
        for (x, y), (x2, y2) in zip(kept, read, strict=True):
            assert torch.equal(x, x2) and torch.equal(y, y2)
    assert memory.train.loader.dataset.memory.shape == (memory.train.num_samples, 3, 8, 8)


def _noise_folder(root, per_class: int, hw: tuple[int, int], seed: int):
    """root/c0, root/c1: ``per_class`` PNGs of uniform noise each, ``hw`` pixels."""
    rng = np.random.default_rng(seed)
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(root / f"c{c}" / f"{i}.png")
    return root


def test_split_manifest_is_written_and_reused_exactly(tmp_path):
    _noise_folder(tmp_path / "imgs", 15, (8, 8), seed=1)
    common = {
        "data": f"folder:{tmp_path / 'imgs'}",
        "epochs": 1,
        "image_size": 8,
        "out": tmp_path / "runs",
        "log": lambda s: None,
    }
    first = cnnlab.train(**common, overrides={"data.num_workers": 0, "output.progress": False, "train.seed": 0})
    manifest = first.run_dir / "split_manifest.csv"
    header, *rows = manifest.read_text().splitlines()
    assert (
        header == "split,path,label,class,sha256" and len(rows) == 30 and all(len(r.split(",")[4]) == 64 for r in rows)
    )
    # another seed would split differently; with the manifest the split is the same
    again = cnnlab.train(
        **common,
        overrides={
            "data.num_workers": 0,
            "output.progress": False,
            "train.seed": 5,
            "data.split_manifest": str(manifest),
        },
    )
    assert (again.run_dir / "split.csv").read_text() == (first.run_dir / "split.csv").read_text()
    (tmp_path / "imgs" / "c0" / "3.png").write_bytes((tmp_path / "imgs" / "c0" / "4.png").read_bytes())
    with pytest.raises(cnnlab.CnnlabError, match=r"c0/3.png: content changed"):
        cnnlab.train(**common, overrides={"data.num_workers": 0, "data.split_manifest": str(manifest)})


def test_imbalance_handling_is_recorded_logged_and_reported(tmp_path):
    lines = []
    r = cnnlab.train(
        data="digits", epochs=1, balance="weights", out=tmp_path, log=lines.append, overrides={"output.progress": False}
    )
    bal = json.loads((r.run_dir / "data.json").read_text())["balance"]
    assert bal["mode"] == "weights" and len(bal["class_weights"]) == 10 and len(bal["train_counts"]) == 10
    counts = np.array(bal["train_counts"])
    assert np.allclose(bal["class_weights"], counts.sum() / (10 * counts), atol=1e-5)
    assert any(line.startswith("class imbalance: class-weighted loss") for line in lines)
    assert "Class imbalance: class-weighted loss" in (r.run_dir / "report.html").read_text()


def test_train_fraction_says_that_validation_and_test_stay_whole(fast_overrides):
    lines: list[str] = []
    result = cnnlab.train(overrides={**fast_overrides, "train.epochs": 1, "data.train_fraction": 0.5}, log=lines.append)
    counts = json.loads((result.run_dir / "data.json").read_text())["split_counts"]
    full = prepare_data(load_dataset("digits"), DataConfig(), seed=0, device=torch.device("cpu"))
    assert counts["val"] == full.counts["val"] and counts["test"] == full.counts["test"]
    assert sum(counts["train"]) < 0.55 * sum(full.counts["train"])
    assert any("stratified 0.5 of the training split" in s and "validation and test stay whole" in s for s in lines)
