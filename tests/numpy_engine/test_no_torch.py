"""The NumPy engine must run where torch is not installed: importing it and training never loads torch."""

from __future__ import annotations

import subprocess
import sys

STEP = """
import sys
import numpy as np
import cnnlab.numpy_engine as ne
from cnnlab.numpy_engine import gradcheck  # noqa: F401
m = ne.lenet()
x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
loss_fn, opt = ne.CrossEntropyLoss(), ne.SGD(m.parameters(), lr=0.1, momentum=0.9)
loss_fn(m(x), np.array([0, 1, 2, 3]))
m.backward(loss_fn.backward(), input_grad=False)
opt.step()
import tqdm  # the progress bar the trainer uses
print("torch" in sys.modules)
"""

FIT = """
import sys
from cnnlab.cli.main import main
code = main(["scratch", "train", "--model", "allconv", "--data", "digits", "--epochs", "1", "--out", sys.argv[1]])
assert code == 0
print("torch" in sys.modules)
"""


def _run(code: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_numpy_engine_training_step_does_not_import_torch():
    assert _run(STEP) == "False"


def test_scratch_training_run_with_run_folder_does_not_import_torch(tmp_path):
    """The whole path from the command line: CLI, dataset registry, split, progress bar, metrics, run folder."""
    assert _run(FIT, str(tmp_path)) == "False"
    assert (tmp_path / "digits-scratch-allconv" / "metrics.json").is_file()
