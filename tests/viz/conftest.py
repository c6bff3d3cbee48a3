"""One small trained run shared by the viz tests (digits, mnist_cnn, 3 epochs: ~90 % test accuracy
in a few seconds), with the report written at the end of training as ``cnnlab train`` does.

Under pytest-xdist the workers share one run: the first to take the lock trains it, the others
wait and reuse it. Tests that change files in the run work on a copy.
"""

from __future__ import annotations

import os

import pytest
from filelock import FileLock  # a dependency of torch


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    from cnnlab.api import train

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # shared by all workers
    run = root / "viz-runs" / "digits-mnist_cnn"
    with FileLock(str(root / "viz-runs.lock")):
        if not (run / "report.html").is_file():
            overrides = {"output.progress": False, "train.threads": 1, "output.plots": True, "output.name": run.name}
            train(data="digits", model="mnist_cnn", epochs=3, out=run.parent, overrides=overrides, log=lambda s: None)
    return run


@pytest.fixture(scope="session")
def digits_preds(digits_run):
    from cnnlab.evaluation.interpret import run_predictions

    return run_predictions(digits_run)
