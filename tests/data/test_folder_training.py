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
            "output.progress": False,
        },
        log=lines.append,
    )
    reported = json.loads((result.run_dir / "data.json").read_text())["skipped"]
    assert sorted(p.split("messy/", 1)[1] for p, _ in reported) == sorted(messy.unreadable)
    assert all(any(str(p).endswith(f) for f in messy.unreadable) for p, _ in reported)
    assert sum("skipped unreadable image" in line for line in lines) == len(messy.unreadable)
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
