"""Fixtures for the explainer: a seeded random-weight seed_cnn on 1x28x28 (BatchNorm statistics made
non-trivial, so its arithmetic is worth checking) saved as a model folder, and a live uvicorn server."""

from __future__ import annotations

import pytest
import torch
from explain_helpers import MEAN, STD, random_bn_stats, start_server

from cnnlab.models import create_model
from cnnlab.runs.model_file import save_model_file


@pytest.fixture(scope="session")
def explain_model(tmp_path_factory):
    torch.manual_seed(0)
    model = random_bn_stats(create_model("seed_cnn", num_classes=10, in_channels=1, input_size=28)).eval()
    meta = {
        "architecture": "seed_cnn",
        "kwargs": {},
        "classes": [f"digit_{i}" for i in range(10)],
        "input_shape": [1, 28, 28],
        "mean": [MEAN],
        "std": [STD],
        "dataset": "digits",  # bundled: the samples endpoint finds its test images without downloads
    }
    return save_model_file(tmp_path_factory.mktemp("explain_model") / "model", model, meta)


@pytest.fixture(scope="module")
def explain_server(explain_model):
    from cnnlab.explain.app import create_explain_app
    from cnnlab.serve.app import ServeSettings

    host, port, stop = start_server(create_explain_app(explain_model, ServeSettings(max_body_bytes=1_000_000)))
    yield host, port
    stop()
