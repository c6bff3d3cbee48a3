"""Tests for cnnlab.data.folder: layouts, hidden files, the errors a user can cause, split manifests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cnnlab.data.folder import (
    FolderScan,
    ManifestRow,
    collect_folder,
    file_sha256,
    manifest_rows,
    read_manifest,
    scan_folder,
    splits_from_manifest,
    write_manifest,
)
from cnnlab.errors import CnnlabError


def _touch(root: Path, *rels: str) -> None:
    """Create files (content = their own name, so every file hashes differently)."""
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rel.encode())


def test_flat_layout_sorted_classes_and_labels(tmp_path):
    _touch(tmp_path, "dog/b.png", "dog/a.JPG", "cat/x.jpeg", "bird/sub/deep.png")
    scan = scan_folder(tmp_path)
    assert isinstance(scan, FolderScan)
    assert scan.layout == "flat"
    assert scan.classes == ["bird", "cat", "dog"]
    assert list(scan.splits) == ["train"]
    got = [(p.relative_to(tmp_path).as_posix(), y) for p, y in scan.splits["train"]]
    # nested folders inside a class folder count; upper-case extensions count
    assert got == [("bird/sub/deep.png", 0), ("cat/x.jpeg", 1), ("dog/a.JPG", 2), ("dog/b.png", 2)]
    assert scan.counts() == {"train": {"bird": 1, "cat": 1, "dog": 2}}


@pytest.mark.parametrize("val_name", ["val", "valid", "validation"])
def test_split_layout_and_val_aliases(tmp_path, val_name):
    _touch(tmp_path, "train/a/1.png", "train/b/2.png", f"{val_name}/a/3.png", f"{val_name}/b/4.png")
    _touch(tmp_path, "test/a/5.png", "test/b/6.png")
    scan = scan_folder(tmp_path)
    assert scan.layout == "splits"
    assert list(scan.splits) == ["train", "val", "test"]
    assert [y for _, y in scan.splits["val"]] == [0, 1]
    assert scan.split_dirs["val"].name == val_name


def test_hidden_and_system_files_ignored(tmp_path):
    _touch(
        tmp_path,
        "cat/1.png",
        "cat/.DS_Store",
        "cat/._1.png",  # macOS resource fork: hidden, has an image extension
        "cat/Thumbs.db",
        "cat/desktop.ini",
        "cat/.ipynb_checkpoints/1-checkpoint.png",
        "dog/2.png",
        "__MACOSX/dog/._2.png",
        ".ipynb_checkpoints/x.png",
        ".hidden_class/3.png",
    )
    scan = scan_folder(tmp_path)
    assert scan.classes == ["cat", "dog"]
    assert [p.name for p, _ in scan.splits["train"]] == ["1.png", "2.png"]
    ignored = {p.relative_to(tmp_path).as_posix() for p in scan.ignored}
    assert {"__MACOSX", ".ipynb_checkpoints", ".hidden_class", "cat/.DS_Store", "cat/._1.png"} <= ignored
    assert {"cat/Thumbs.db", "cat/desktop.ini", "cat/.ipynb_checkpoints"} <= ignored


def test_non_image_files_are_listed_not_loaded(tmp_path):
    _touch(tmp_path, "cat/1.png", "cat/notes.txt", "README.md", "dog/2.heic", "dog/3.png")
    scan = scan_folder(tmp_path)
    assert sorted(p.name for p in scan.skipped_files) == ["2.heic", "README.md", "notes.txt"]
    assert scan.num_images == 2


def test_missing_path_and_file_path(tmp_path):
    with pytest.raises(CnnlabError, match="does not exist"):
        scan_folder(tmp_path / "nope")
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(CnnlabError, match="is a file, not a folder"):
        scan_folder(tmp_path / "f.png")


def test_no_class_folders(tmp_path):
    _touch(tmp_path, "loose.png")
    with pytest.raises(CnnlabError, match="no class folders"):
        scan_folder(tmp_path)


def test_empty_class_named(tmp_path):
    _touch(tmp_path, "cat/1.png", "dog/notes.txt")
    (tmp_path / "fish").mkdir()
    with pytest.raises(CnnlabError) as err:
        scan_folder(tmp_path)
    msg = str(err.value)
    assert "empty class folder" in msg and "dog" in msg and "fish" in msg and "/cat" not in msg
    # collect_folder reports instead of raising, so the doctor can list it with everything else
    assert collect_folder(tmp_path).empty_classes == {"train": ["dog", "fish"]}


def test_class_mismatch_names_classes_and_split(tmp_path):
    _touch(tmp_path, "train/cat/1.png", "train/dog/2.png", "train/eel/3.png", "test/cat/4.png", "test/fox/5.png")
    with pytest.raises(CnnlabError) as err:
        scan_folder(tmp_path)
    msg = str(err.value)
    assert "train/ lacks 'fox'" in msg
    assert "test/ lacks 'dog', 'eel'" in msg


def test_no_images_at_all(tmp_path):
    _touch(tmp_path, "train/cat/readme.txt")
    scan = collect_folder(tmp_path)
    assert scan.empty_classes == {"train": ["cat"]}
    with pytest.raises(CnnlabError, match="empty class folder"):
        scan_folder(tmp_path)


def test_mixed_split_and_class_folders_is_an_error(tmp_path):
    _touch(tmp_path, "train/cat/1.png", "dog/2.png")
    with pytest.raises(CnnlabError, match="mixes split folders"):
        scan_folder(tmp_path)


def test_two_folders_for_one_split(tmp_path):
    _touch(tmp_path, "train/cat/1.png", "val/cat/2.png", "valid/cat/3.png")
    with pytest.raises(CnnlabError, match="two folders for the val split"):
        scan_folder(tmp_path)


def test_file_sha256_matches_hashlib(tmp_path):
    import hashlib

    data = os.urandom(3 * (1 << 20) + 7)  # crosses the 1 MiB chunk boundary
    (tmp_path / "f.bin").write_bytes(data)
    assert file_sha256(tmp_path / "f.bin") == hashlib.sha256(data).hexdigest()


def test_manifest_round_trip_and_verification(tmp_path):
    _touch(tmp_path, "train/cat/1.png", "train/dog/2.png", "test/cat/3.png", "test/dog/4.png")
    scan = scan_folder(tmp_path)
    rows = manifest_rows(scan)
    assert rows[0] == ManifestRow("train", "train/cat/1.png", 0, "cat", file_sha256(tmp_path / "train/cat/1.png"))
    out = write_manifest(tmp_path / "run" / "split.csv", rows)
    assert out.read_text().splitlines()[0] == "split,path,label,class,sha256"
    back = read_manifest(out)
    assert back == rows
    assert splits_from_manifest(tmp_path, back, scan.classes) == scan.splits

    (tmp_path / "test/dog/4.png").write_bytes(b"changed")
    (tmp_path / "train/cat/1.png").unlink()
    with pytest.raises(CnnlabError) as err:
        splits_from_manifest(tmp_path, back, scan.classes)
    assert "train/cat/1.png: missing" in str(err.value)
    assert "test/dog/4.png: content changed" in str(err.value)
    with pytest.raises(CnnlabError, match="label 1 is 'dog'"):
        splits_from_manifest(tmp_path, back[1:2], ["dog", "cat"], verify=False)


def test_manifest_accepts_dicts_and_rejects_bad_files(tmp_path):
    row = {"split": "val", "path": "a/1.png", "label": 0, "class": "a", "sha256": "00"}
    path = write_manifest(tmp_path / "m.csv", [row])
    assert read_manifest(path) == [ManifestRow("val", "a/1.png", 0, "a", "00")]
    (tmp_path / "bad.csv").write_text("file,label\nx,1\n")
    with pytest.raises(CnnlabError, match="not a split manifest"):
        read_manifest(tmp_path / "bad.csv")
    with pytest.raises(CnnlabError, match="not found"):
        read_manifest(tmp_path / "missing.csv")


def test_symlinked_class_folders_are_followed_and_kept_relative(tmp_path):
    _touch(tmp_path / "elsewhere", "cats/1.png", "cats/2.png")
    _touch(tmp_path / "ds", "dogs/3.png")
    (tmp_path / "ds" / "cats").symlink_to(tmp_path / "elsewhere" / "cats", target_is_directory=True)
    scan = scan_folder(tmp_path / "ds")
    assert scan.counts() == {"train": {"cats": 2, "dogs": 1}}
    assert [r.path for r in manifest_rows(scan)] == ["cats/1.png", "cats/2.png", "dogs/3.png"]


def test_symlink_loop_inside_a_class_folder_terminates(tmp_path):
    _touch(tmp_path, "cats/1.png", "dogs/2.png")
    (tmp_path / "cats" / "again").symlink_to(tmp_path / "cats", target_is_directory=True)
    scan = scan_folder(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p, _ in scan.splits["train"]] == ["cats/1.png", "dogs/2.png"]
