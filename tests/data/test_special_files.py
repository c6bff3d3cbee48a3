"""FIFOs, sockets and devices named like images are skipped in training and refused when read, as
``cnnlab data check`` skips them; a FIFO used to hang ``cnnlab train`` (issue 26)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from cnnlab.data.folder import scan_folder
from cnnlab.data.images import ImageReadError, open_image

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    os.mkfifo(root / "cat" / "pipe.jpg")
    (root / "dog" / "zero.png").symlink_to("/dev/zero")
    return root


def test_scan_leaves_special_files_out_of_the_splits(photos):
    scan = scan_folder(photos)
    names = [p.name for samples in scan.splits.values() for p, _ in samples]
    assert len(names) == 24 and "pipe.jpg" not in names and "zero.png" not in names
    assert {p.name for p in scan.skipped_files} >= {"pipe.jpg", "zero.png"}


def test_reading_a_fifo_or_a_device_as_an_image_is_refused_at_once(photos):
    start = time.monotonic()
    for name in ("cat/pipe.jpg", "dog/zero.png"):
        with pytest.raises(ImageReadError, match="not a regular file") as info:
            open_image(photos / name)
        assert info.value.kind == "not_a_file"
    assert time.monotonic() - start < 5


@pytest.mark.slow
def test_cnnlab_train_on_a_folder_with_a_fifo_finishes(photos, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "cnnlab", "train", "--data", f"folder:{photos}", "--model", "fast_cnn"]
    cmd += ["--epochs", "1", "--data.image_size", "16", "--out", str(tmp_path / "runs"), "--no-progress"]
    cmd += ["--output.plots", "false", "--train.threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)  # hung for ever before
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (run,) = (tmp_path / "runs").iterdir()
    split = (run / "split.csv").read_text()
    assert "pipe.jpg" not in split and "zero.png" not in split and split.count(".png") == 24
