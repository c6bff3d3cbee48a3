"""Training on the messy folder (tests/data/messy.py): --on-bad-image skip completes and reports, fail stops first."""

import json
import shutil
import subprocess
import sys

import pytest

import cnnlab
from cnnlab.errors import CnnlabError


@pytest.fixture
def messy_trainable(messy, tmp_path):
    """The messy folder without its empty class (an empty class is an error of its own, tested elsewhere)."""
    root = tmp_path / "messy"
    shutil.copytree(messy.root, root)
    for split in ("train", "test"):
        shutil.rmtree(root / split / messy.empty_class)
    return root


def test_skip_trains_and_reports_every_unreadable_file(messy, messy_trainable, tmp_path):
    lines = []
    result = cnnlab.train(
        data=f"folder:{messy_trainable}",
        epochs=1,
        image_size=16,
        on_bad_image="skip",
        out=tmp_path / "runs",
        overrides={
            "data.num_workers": 0,
            "data.val_fraction": 0.0,
            "data.max_bad_fraction": 0.2,
            "data.on_leak": "keep",  # test/modes/rgb_copy.png is a copy of a training image
            "output.progress": False,
        },
        log=lines.append,
    )
    assert "train/modes/mode_RGB.png == test/modes/rgb_copy.png" in result.metrics["warnings"][0]
    reported = json.loads((result.run_dir / "data.json").read_text())["skipped"]
    assert sorted(p.split("messy/", 1)[1] for p, _ in reported) == sorted(messy.unreadable)
    assert all(any(str(p).endswith(f) for f in messy.unreadable) for p, _ in reported)
    assert sum(line.startswith("left out") for line in lines) == len(messy.unreadable)
    used = (result.run_dir / "split.csv").read_text()
    assert all(bad not in used for bad in messy.unreadable)
    assert result.metrics["num_samples"] == 3  # test/: broken/ok_2, exif/ok_3, modes/rgb_copy


def test_fail_stops_before_the_first_epoch(messy_trainable, tmp_path):
    lines = []
    with pytest.raises(CnnlabError, match=r"unreadable image.*--on-bad-image skip"):
        cnnlab.train(
            data=f"folder:{messy_trainable}",
            epochs=1,
            image_size=16,
            out=tmp_path / "runs",
            overrides={"data.num_workers": 0, "output.progress": False},
            log=lines.append,
        )
    assert not any(line.startswith("epoch") for line in lines)
    assert not (tmp_path / "runs").exists()  # nothing written: the run never started


def test_cli_fail_is_one_line_without_traceback(messy_trainable, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "--data", f"folder:{messy_trainable}", "--out", tmp_path / "runs"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "truncated.jpg" in r.stderr and "--on-bad-image skip" in r.stderr


def _split_folder(root, n=6):
    """train/ and test/ with classes a and b of distinct noise pictures (8x8 PNGs)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for c, colour in (("a", (200, 40, 40)), ("b", (40, 40, 200))):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                px = np.clip(np.array(colour) + rng.normal(0, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(px).save(root / split / c / f"{i}.png")
    return root


def _train(folder, tmp_path, lines=None, **over):
    return cnnlab.train(
        data=f"folder:{folder}",
        epochs=1,
        image_size=8,
        out=tmp_path / "runs",
        overrides={"data.num_workers": 0, "output.progress": False, "train.threads": 1, **over},
        log=(lines.append if lines is not None else lambda s: None),
    )


def test_a_leak_between_given_splits_is_refused_dropped_or_kept_with_a_warning(tmp_path):
    folder = _split_folder(tmp_path / "photos")
    shutil.copy(folder / "test" / "a" / "2.png", folder / "train" / "a" / "IMG_copy.png")
    with pytest.raises(CnnlabError, match=r"1 image\(s\) of the test split are also in train") as err:
        _train(folder, tmp_path)
    assert "train/a/IMG_copy.png == test/a/2.png" in str(err.value)
    assert "--data.on_leak drop" in str(err.value) and "--data.on_leak keep" in str(err.value)
    assert not (tmp_path / "runs").exists()  # refused before a run folder is written

    dropped = _train(folder, tmp_path, **{"data.on_leak": "drop"}).run_dir
    rows = (dropped / "split.csv").read_text()
    assert "train/a/IMG_copy.png" not in rows and "test/a/2.png" in rows  # the test split stays as given
    skipped = json.loads((dropped / "data.json").read_text())["skipped"]
    assert skipped == [["train/a/IMG_copy.png", "leak: a copy of a test image"]]
    assert "warnings" not in json.loads((dropped / "metrics.json").read_text())

    lines: list[str] = []
    kept = _train(folder, tmp_path, lines, **{"data.on_leak": "keep"}).run_dir
    (warning,) = json.loads((kept / "metrics.json").read_text())["warnings"]
    assert "1 image(s) of the test split are also in train (data.on_leak keep)" in warning
    assert "overstate" in warning and any(line.startswith("warning: 1 image(s)") for line in lines)
    assert "Warning:</b> 1 image(s) of the test split are also in train" in (kept / "report.html").read_text()


def test_one_image_under_two_labels_is_refused_or_every_copy_dropped(tmp_path):
    folder = _split_folder(tmp_path / "photos")
    shutil.copy(folder / "train" / "a" / "1.png", folder / "train" / "b" / "maybe-a.png")
    with pytest.raises(CnnlabError, match=r"1 image\(s\) are saved under two labels") as err:
        _train(folder, tmp_path)
    assert "train/a/1.png (a) == train/b/maybe-a.png (b)" in str(err.value)
    assert "--data.on_label_conflict drop" in str(err.value)
    run = _train(folder, tmp_path, **{"data.on_label_conflict": "drop"}).run_dir
    rows = (run / "split.csv").read_text()
    assert "train/a/1.png" not in rows and "train/b/maybe-a.png" not in rows
    reasons = dict(json.loads((run / "data.json").read_text())["skipped"])
    assert reasons["train/b/maybe-a.png"] == "label conflict: the same image is labelled 'a' and 'b'"


def test_a_flat_folder_with_one_image_in_two_classes_is_refused(tmp_path):
    folder = _split_folder(tmp_path / "photos")
    flat = folder / "train"  # a/ and b/ on their own: the flat layout, split by cnnlab
    shutil.copy(flat / "a" / "0.png", flat / "b" / "0-again.png")
    with pytest.raises(CnnlabError, match="saved under two labels"):
        _train(flat, tmp_path)


def test_the_policies_are_checked_before_any_data_is_read(tmp_path):
    with pytest.raises(CnnlabError, match="data.on_leak must be one of fail, drop, keep, got 'ignore'"):
        _train(tmp_path / "nowhere", tmp_path, **{"data.on_leak": "ignore"})
    with pytest.raises(CnnlabError, match="data.on_label_conflict must be one of fail, drop"):
        _train(tmp_path / "nowhere", tmp_path, **{"data.on_label_conflict": "keep"})
