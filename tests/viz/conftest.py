"""One small trained run shared by the viz tests (digits, mnist_cnn, 3 epochs: ~90 % test accuracy
in a few seconds), with the report written at the end of training as ``cnnlab train`` does."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    from cnnlab.api import train

    out = tmp_path_factory.mktemp("runs")
    overrides = {"output.progress": False, "train.threads": 1, "output.plots": True}
    return train(data="digits", model="mnist_cnn", epochs=3, out=out, overrides=overrides, log=lambda s: None).run_dir


@pytest.fixture(scope="session")
def digits_preds(digits_run):
    from cnnlab.evaluation.interpret import run_predictions

    return run_predictions(digits_run)
