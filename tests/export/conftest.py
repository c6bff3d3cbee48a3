"""Fixtures for the export tests: a trained digits run (1 epoch, once per session) and a random-weight model file."""

from __future__ import annotations

import pytest
import torch

from cnnlab.models import create_model
from cnnlab.runs.model_file import save_model_file


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    import cnnlab

    torch.set_num_threads(1)  # the export tests time small models; oversubscribed threads only add noise
    result = cnnlab.train(
        data="digits",
        epochs=1,
        out=tmp_path_factory.mktemp("export_runs"),
        overrides={"output.progress": False, "output.plots": False, "train.threads": 1},
        log=lambda s: None,
    )
    return result.run_dir


@pytest.fixture(scope="session")
def random_model(tmp_path_factory):
    """A seed_cnn with seeded random weights for a dataset that does not exist here (random parity inputs)."""
    torch.manual_seed(1)
    model = create_model("seed_cnn", num_classes=3, in_channels=3, input_size=16).eval()
    meta = {
        "architecture": "seed_cnn",
        "kwargs": {},
        "classes": ["cat", "dog", "fox"],
        "input_shape": [3, 16, 16],
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.2, 0.2],
        "dataset": "folder:/nonexistent/pets",
    }
    return save_model_file(tmp_path_factory.mktemp("random_model") / "model", model, meta)
