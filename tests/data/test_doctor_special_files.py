"""``data check`` on a folder holding a FIFO named like an image: skipped with a warning, never read
(opening a FIFO for reading waits for a writer forever)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnlab.data.doctor import check_folder


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")
def test_a_fifo_named_jpg_is_skipped_not_read(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    os.mkfifo(tmp_path / "a" / "pipe.jpg")
    report = check_folder(tmp_path)  # would hang here if the FIFO were opened
    skipped = [w for w in report.warnings if w.code == "not_a_file"]
    assert [w.paths for w in skipped] == [["a/pipe.jpg"]] and "FIFO" in skipped[0].message
    assert not report.errors
    # the CLI finishes too (bounded: a hang fails the test instead of stalling the suite)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "cnnlab", "data", "check", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and "pipe.jpg" in out.stdout, out.stdout + out.stderr
