"""The NumPy engine must run where torch is not installed: importing it and training never loads torch."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
import numpy as np
import cnnlab.numpy_engine as ne
from cnnlab.numpy_engine import gradcheck, train  # noqa: F401
m = ne.lenet()
x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
loss_fn, opt = ne.CrossEntropyLoss(), ne.SGD(m.parameters(), lr=0.1, momentum=0.9)
loss_fn(m(x), np.array([0, 1, 2, 3]))
m.backward(loss_fn.backward(), input_grad=False)
opt.step()
import tqdm  # the progress bar the trainer uses
print("torch" in sys.modules)
"""


def test_numpy_engine_training_step_does_not_import_torch():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
