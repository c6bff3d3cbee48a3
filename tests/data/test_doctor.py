"""Tests for the data doctor (cnnlab.data.doctor and `cnnlab data check`): each problem of the messy
folder is reported exactly, exit codes, JSON report, near-duplicates, class weights, named datasets."""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnnlab.cli import data as data_cli
from cnnlab.data.doctor import check, check_arrays, check_folder, class_weights
from cnnlab.data.folder import scan_folder
from cnnlab.data.images import load_image
from cnnlab.data.screening import near_duplicate_pairs, popcount
from cnnlab.errors import CnnlabError


@pytest.fixture(scope="module")
def report(messy):
    return check_folder(messy.root, near_duplicates=True)


def _codes(issues, code):
    return [i for i in issues if i.code == code]


def test_unreadable_files_each_with_its_reason(messy, report):
    got = {u["path"]: (u["kind"], u["reason"]) for u in report.unreadable}
    assert set(got) == set(messy.unreadable)
    for rel, (kind, words) in messy.unreadable.items():
        assert got[rel][0] == kind and words in got[rel][1], rel
    assert sorted(i.paths[0] for i in _codes(report.errors, "unreadable")) == sorted(messy.unreadable)


def test_leak_is_an_error_and_within_split_copy_a_warning(messy, report):
    leaks = _codes(report.errors, "leak")
    assert [sorted(i.paths) for i in leaks] == [sorted(messy.leak_pair)]
    dups = _codes(report.warnings, "duplicate")
    assert [sorted(i.paths) for i in dups] == [sorted(messy.train_duplicate)]
    groups = {tuple(sorted(g["files"])): g for g in report.exact_duplicates}
    assert groups[tuple(sorted(messy.leak_pair))]["leak"] is True
    assert groups[tuple(sorted(messy.train_duplicate))]["leak"] is False
    assert len(groups) == 2  # the hidden checkpoint copy of mode_RGB.png is not counted


def test_empty_class_hidden_and_skipped(messy, report):
    empties = sorted(i.paths[0] for i in _codes(report.errors, "empty_class"))
    assert empties == [f"test/{messy.empty_class}", f"train/{messy.empty_class}"]
    assert report.skipped_files == messy.skipped
    assert [i.paths for i in _codes(report.warnings, "skipped")] == [[p] for p in messy.skipped]
    assert sorted(report.ignored) == sorted(messy.hidden)
    every_listed = {p for u in report.unreadable for p in [u["path"]]} | {
        f for g in report.exact_duplicates for f in g["files"]
    }
    assert not any(".ipynb_checkpoints" in p or ".DS_Store" in p for p in every_listed)


def test_counts_modes_sizes(messy, report):
    bad = {rel.split("/")[0] + "/" + rel.split("/")[2]: 0 for rel in messy.unreadable}
    expected = {s: dict(per) for s, per in messy.counts.items()}
    for rel in messy.unreadable:
        split, cls, _ = rel.split("/")
        expected[split][cls] -= 1
    assert bad  # the fixture has unreadable files, so readable counts differ from file counts
    assert report.counts == expected
    assert report.classes == messy.classes and report.layout == "splits"
    for rel, mode in messy.mode_of.items():
        assert report.modes.get(mode, 0) >= 1, rel
    readable = sum(sum(per.values()) for per in expected.values())
    assert sum(report.modes.values()) == readable
    assert report.sizes["most_common"][0][0] == "16x12"


def test_near_duplicate_groups(messy, report):
    got = sorted(sorted(g["files"]) for g in report.near_duplicates)
    assert got == sorted(sorted(g) for g in messy.near_groups)
    assert all(not g["leak"] for g in report.near_duplicates)


def test_exit_code_and_error_set(report):
    assert report.exit_code == 1
    assert {i.code for i in report.errors} == {"unreadable", "leak", "empty_class"}
    assert "imbalance" in {i.code for i in report.warnings}


def test_json_report_via_cli(messy, tmp_path, capsys):
    out = tmp_path / "r" / "report.json"
    rc = _cli(["data", "check", str(messy.root), "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 1
    assert "FAILED: 7 error(s)" in text and messy.leak_pair[0] in text
    d = json.loads(out.read_text())
    assert d["exit_code"] == 1 and d["near_duplicates"] is None
    assert {u["path"] for u in d["unreadable"]} == set(messy.unreadable)
    assert d["imbalance"]["class_weights"] == class_weights(d["counts"]["train"])
    assert {e["code"] for e in d["errors"]} == {"unreadable", "leak", "empty_class"}


def test_cli_json_to_stdout_and_bad_flags(messy, capsys):
    assert _cli(["data", "check", f"folder:{messy.root}", "--json", "-", "--near-duplicates"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert len(d["near_duplicates"]) == len(messy.near_groups)
    with pytest.raises(CnnlabError, match="--threshold"):
        _cli(["data", "check", str(messy.root), "--threshold", "64"])
    with pytest.raises(CnnlabError, match="does not exist"):
        _cli(["data", "check", str(messy.root / "nope")])


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cnnlab")
    data_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def _picture(seed: int, size=(64, 48)) -> Image.Image:
    """A smooth picture (gradient and shapes) that survives resizing, unlike noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    ramp = np.linspace(0, 255, w)[None, :] * rng.random() + np.linspace(0, 255, h)[:, None] * rng.random()
    img = Image.fromarray(np.clip(ramp, 0, 255).astype(np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x, y = rng.integers(0, w - 16), rng.integers(0, h - 16)
        draw.ellipse([x, y, x + 16, y + 12], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


def _clean_folder(root: Path, per_class: dict[str, int], start: int = 0) -> None:
    for k, (cls, n) in enumerate(per_class.items()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _picture(start + 100 * k + i).save(root / cls / f"{i}.png")


def test_clean_folder_with_only_warnings_exits_zero(tmp_path, capsys):
    _clean_folder(tmp_path / "train", {"a": 6, "b": 2})
    _clean_folder(tmp_path / "val", {"a": 1, "b": 1}, start=50)
    buf = io.BytesIO()
    _picture(999).save(buf, "PNG")
    (tmp_path / "val" / "a" / "png_named.jpg").write_bytes(buf.getvalue())
    rc = _cli(["data", "check", str(tmp_path)])
    text = capsys.readouterr().out
    assert rc == 0 and "OK: 0 error(s)" in text
    r = check_folder(tmp_path)
    assert sorted(i.code for i in r.warnings) == ["format_mismatch", "imbalance"]
    assert r.imbalance["ratio"] == 3.0 and r.imbalance["largest"] == "a"
    assert _codes(r.warnings, "format_mismatch")[0].paths == ["val/a/png_named.jpg"]


def test_class_mismatch_is_an_error(tmp_path):
    _clean_folder(tmp_path / "train", {"cat": 1, "dog": 1, "eel": 1})
    _clean_folder(tmp_path / "test", {"cat": 1, "fox": 1}, start=40)
    _picture(7).save(tmp_path / "train" / "loose.png")
    r = check_folder(tmp_path)
    assert [i.message for i in _codes(r.warnings, "skipped")] == ["train/loose.png: outside any class folder, ignored"]
    msgs = [i.message for i in _codes(r.errors, "class_mismatch")]
    assert msgs == [
        "train: lacks class folder(s) 'fox' that other splits have",
        "test: lacks class folder(s) 'dog', 'eel' that other splits have",
    ]
    assert r.exit_code == 1


def test_flat_folder_duplicates_warn_about_the_random_split(tmp_path):
    _clean_folder(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "b" / "copy.png").write_bytes((tmp_path / "a" / "0.png").read_bytes())
    r = check_folder(tmp_path)
    (dup,) = _codes(r.warnings, "duplicate")
    assert sorted(dup.paths) == ["a/0.png", "b/copy.png"] and "random split" in dup.message
    (conflict,) = _codes(r.errors, "label_conflict")  # an error: training refuses it
    assert "['a', 'b']" in conflict.message and sorted(conflict.paths) == ["a/0.png", "b/copy.png"]
    assert r.exit_code == 1 and r.layout == "flat"


def test_threads_give_the_same_report(messy, report):
    threaded = check_folder(messy.root, near_duplicates=True, workers=3)
    a, b = report.to_dict(), threaded.to_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_resized_copy_is_a_near_duplicate_and_other_pictures_are_not(tmp_path):
    _picture(1).save(tmp_path / "big.png")
    _picture(1).resize((32, 24), Image.Resampling.LANCZOS).save(tmp_path / "small.jpg", quality=85)
    for seed in range(2, 8):
        _picture(seed).save(tmp_path / f"other{seed}.png")
    scan_root = tmp_path.parent / (tmp_path.name + "_ds")
    (scan_root / "train" / "x").mkdir(parents=True)
    (scan_root / "test" / "x").mkdir(parents=True)
    for p in tmp_path.iterdir():
        split = "test" if p.name == "small.jpg" else "train"
        (scan_root / split / "x" / p.name).write_bytes(p.read_bytes())
    r = check_folder(scan_root, near_duplicates=True)
    assert [g["files"] for g in r.near_duplicates] == [["train/x/big.png", "test/x/small.jpg"]]
    assert r.near_duplicates[0]["leak"] is True
    assert "possible leakage" in _codes(r.warnings, "near_duplicate")[0].message
    assert r.exit_code == 0  # a perceptual match is a warning, never an error


def test_near_duplicate_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    dh = rng.integers(0, 2**63, size=300, dtype=np.int64).astype(np.uint64)
    ah = rng.integers(0, 2**63, size=300, dtype=np.int64).astype(np.uint64)
    for i in range(0, 40, 2):  # plant near pairs: flip up to 5 random bits of both hashes
        for arr in (dh, ah):
            flips = rng.choice(64, size=rng.integers(0, 6), replace=False)
            arr[i + 1] = arr[i] ^ np.uint64(sum(1 << int(b) for b in flips))
    for t in (0, 3, 4):
        want = [
            (i, j)
            for i in range(300)
            for j in range(i + 1, 300)
            if bin(int(dh[i]) ^ int(dh[j])).count("1") <= t and bin(int(ah[i]) ^ int(ah[j])).count("1") <= t
        ]
        pairs, crowded = near_duplicate_pairs(dh, ah, t)
        assert pairs == want and not crowded.any()
    assert popcount(np.array([0, 1, 2**64 - 1], dtype=np.uint64)).tolist() == [0, 1, 64]


def test_crowded_hash_buckets_are_skipped_and_reported():
    dh = np.zeros(300, dtype=np.uint64)  # e.g. 300 blank images: one crowded bucket
    dh[-1] = np.uint64(2**64 - 1)
    ah = dh.copy()
    pairs, crowded = near_duplicate_pairs(dh, ah, 4, max_bucket=100)
    assert pairs == [] and crowded.sum() == 299 and not crowded[-1]
    pairs, crowded = near_duplicate_pairs(dh[:50], ah[:50], 4, max_bucket=100)
    assert len(pairs) == 50 * 49 // 2 and not crowded.any()


def test_class_weights_formula():
    w = class_weights({"a": 10, "b": 30, "c": 0})
    # n = 40 images over K = 3 classes: 40 / (3 * 10) and 40 / (3 * 30); the empty class gets 0
    assert w == {"a": 1.3333, "b": 0.4444, "c": 0.0}
    w = class_weights({"x": 7, "y": 3, "z": 11})
    assert w["y"] > w["x"] > w["z"]
    # the same numbers training uses for --balance weights
    from cnnlab.engine.losses import class_weights as training_weights

    assert np.allclose(list(w.values()), training_weights([7, 3, 11]).numpy(), atol=1e-4)
    assert class_weights({"a": 0}) == {"a": 0.0}


def _arrays(n_train=40, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    return types.SimpleNamespace(
        name="toy",
        classes=["a", "b", "c"],
        train_images=rng.integers(0, 256, (n_train, 8, 8, 1), dtype=np.uint8),
        train_labels=np.arange(n_train) % 2,  # class 'c' never appears in train
        test_images=rng.integers(0, 256, (n_test, 8, 8, 1), dtype=np.uint8),
        test_labels=np.arange(n_test) % 3,
    )


def test_check_arrays_counts_duplicates_and_leakage():
    ds = _arrays()
    ds.test_images[4] = ds.train_images[7]  # leakage
    ds.train_images[3] = ds.train_images[5]  # copy within train, labels 1 and 1
    r = check_arrays(ds)
    assert r.counts["train"] == {"a": 20, "b": 20, "c": 0}
    assert r.counts["test"] == {"a": 4, "b": 3, "c": 3}
    assert [i.paths for i in _codes(r.errors, "leak")] == [["train[7]", "test[4]"]]
    assert [i.paths for i in _codes(r.warnings, "duplicate")] == [["train[3]", "train[5]"]]
    assert [i.message for i in _codes(r.errors, "empty_class")] == ["train: class 'c' has no images"]
    assert r.modes == {"L": 50} and r.sizes["most_common"] == [["8x8", 50]]
    assert r.exit_code == 1
    clean = check_arrays(_arrays(seed=1), name="toy")
    clean.errors = [e for e in clean.errors if e.code != "empty_class"]
    assert clean.exact_duplicates == [] and clean.exit_code == 0


def test_check_dispatches_names_to_the_dataset_registry(monkeypatch, messy):
    calls = []

    def fake_load_dataset(name, root=None, **kw):
        calls.append((name, root))
        return _arrays()

    fake = types.ModuleType("cnnlab.data.datasets")
    fake.load_dataset = fake_load_dataset
    fake.list_datasets = lambda: ["toy-name", "mnist", "folder:PATH"]
    monkeypatch.setitem(sys.modules, "cnnlab.data.datasets", fake)
    monkeypatch.setattr("cnnlab.data.datasets", fake, raising=False)
    r = check("toy-name", root="/somewhere")
    assert calls == [("toy-name", "/somewhere")] and r.kind == "arrays" and r.target == "toy-name"
    assert check(f"folder:{messy.root}").kind == "folder" and calls == [("toy-name", "/somewhere")]
    with pytest.raises(CnnlabError, match="neither a folder .* nor a dataset name. Did you mean 'mnist'"):
        check("mnsit")


def test_registered_in_the_cnnlab_command(messy, capsys):
    from cnnlab.cli.main import main

    assert main(["data", "check", str(messy.root), "--max-lines", "2"]) == 1
    out = capsys.readouterr().out
    assert "ERRORS (7)" in out and "more (see the JSON report" in out
    # findings that change what to do (leakage, an empty class) are shown even past --max-lines
    assert "leak " in out and "empty_class" in out
    assert main(["data", "check", str(messy.root / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.data
def test_cifar10_jpeg_test_split_loads_as_a_folder(shared_data, tmp_path):
    tar = shared_data / "cifar10-jpeg" / "test.tar"
    if not tar.is_file():
        pytest.skip(f"{tar} not found")
    with tarfile.open(tar) as tf:
        tf.extractall(tmp_path, filter="data")
    scan = scan_folder(tmp_path / "test")
    cifar10_order = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert scan.classes == cifar10_order and scan.layout == "flat"
    assert scan.counts() == {"train": dict.fromkeys(cifar10_order, 1000)}
    splits_layout = scan_folder(tmp_path)  # the extracted root has a test/ split folder
    assert splits_layout.layout == "splits" and len(splits_layout.splits["test"]) == 10_000
    x = load_image(scan.splits["train"][0][0], 3)
    assert x.shape == (32, 32, 3) and x.dtype == np.float32
    sub = tmp_path / "two_classes"  # the doctor on 2 of the classes (symlinked class folders are followed)
    for c in ("cat", "dog"):
        (sub / c).parent.mkdir(exist_ok=True)
        (sub / c).symlink_to(tmp_path / "test" / c, target_is_directory=True)
    r = check_folder(sub)
    assert r.exit_code == 0 and r.unreadable == [] and r.counts == {"train": {"cat": 1000, "dog": 1000}}
    assert r.modes == {"RGB": 2000} and r.sizes["most_common"] == [["32x32", 2000]]


def test_doctor_and_folder_modules_do_not_import_torch():
    import subprocess

    code = (
        "import sys, cnnlab.data.doctor, cnnlab.data.folder, cnnlab.data.images, cnnlab.cli.data; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_low_detail_datasets_skip_the_near_duplicate_search(tmp_path):
    blank = io.BytesIO()
    Image.new("L", (4, 4), 0).save(blank, "PNG")
    (tmp_path / "x").mkdir()
    for i in range(300):  # > MAX_BUCKET images whose hashes are all zero
        (tmp_path / "x" / f"{i}.png").write_bytes(blank.getvalue())
    r = check_folder(tmp_path, near_duplicates=True)
    assert r.near_duplicates == []
    assert [i.code for i in r.warnings if i.code.startswith("near")] == ["near_duplicate_unusable"]
    assert len(r.exact_duplicates) == 1 and len(r.exact_duplicates[0]["files"]) == 300


def test_screen_samples_fail_and_skip(messy):
    from cnnlab.data.folder import collect_folder
    from cnnlab.data.screening import screen_samples

    splits = collect_folder(messy.root).splits
    with pytest.raises(CnnlabError) as err:
        screen_samples(splits, on_bad_image="fail")
    assert all(rel in str(err.value) for rel in messy.unreadable) and "--on-bad-image skip" in str(err.value)
    with pytest.raises(CnnlabError, match="more than the 5%") as err:
        screen_samples(splits, on_bad_image="skip")  # 4 of 30 files are bad
    assert "(data.max_bad_fraction)" in str(err.value) and "--data.max_bad_fraction 0.14" in str(err.value)
    keep, _ = screen_samples(splits, on_bad_image="skip", max_bad_fraction=0.14)  # the limit suggested is enough
    assert sum(map(len, keep.values())) == sum(map(len, splits.values())) - 4
    keep, bad = screen_samples(splits, on_bad_image="skip", max_bad_fraction=0.5, workers=2)
    root = str(messy.root) + "/"
    assert sorted(p.replace(root, "") for _, p, _ in bad) == sorted(messy.unreadable)
    assert sum(map(len, keep.values())) == sum(map(len, splits.values())) - len(messy.unreadable)
    with pytest.raises(CnnlabError, match="must be one of skip, fail"):
        screen_samples(splits, on_bad_image="ignore")


def test_screen_samples_refuses_to_empty_a_class(tmp_path):
    from cnnlab.data.screening import screen_samples

    (tmp_path / "a.png").write_bytes(b"")
    _picture(0).save(tmp_path / "b.png")
    splits = {"train": [(tmp_path / "a.png", 0)] + [(tmp_path / "b.png", 1)] * 30}
    with pytest.raises(CnnlabError, match=r"label\(s\) \[0\] have no training images"):
        screen_samples(splits, on_bad_image="skip")


def test_image_read_error_survives_pickling():
    import pickle

    from cnnlab.data.images import ImageReadError

    err = pickle.loads(pickle.dumps(ImageReadError("x/y.jpg", "truncated", "truncated: cut")))
    assert (err.path, err.kind, err.reason) == ("x/y.jpg", "truncated", "truncated: cut")
    assert "x/y.jpg" in str(err)


def test_trainable_messy_variant(messy_trainable):
    from cnnlab.data.screening import screen_samples

    m = messy_trainable
    scan = scan_folder(m.root)  # no empty class: scan_folder accepts it
    assert scan.classes == m.classes == ["broken", "exif", "modes"]
    keep, bad = screen_samples(scan.splits, on_bad_image="skip")  # 4 bad of 90: under the 5 % default
    assert len(bad) == len(m.unreadable) == 4 and sum(map(len, scan.splits.values())) == 90
    r = check_folder(m.root)
    assert r.counts["train"] == {
        c: n - sum(1 for u in m.unreadable if f"/{c}/" in u) for c, n in m.counts["train"].items()
    }
    assert {i.code for i in r.errors} == {"unreadable", "leak"}
