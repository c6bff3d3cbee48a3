"""Fixtures for the predictor/server tests: one trained run per session and a small random-weight model file.

The trained run (digits, 1 epoch) backs the tests that compare predict with evaluate; the server
tests only need a valid model file, so they use a seeded random seed_cnn on 1x28x28 inputs (no
training, milliseconds)."""

from __future__ import annotations

import pytest
import torch

from cnnlab.models import create_model
from cnnlab.runs.model_file import save_model_file

CLASSES = [f"class_{i}" for i in range(10)]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    import cnnlab

    out = tmp_path_factory.mktemp("serve_runs")
    result = cnnlab.train(
        data="digits",
        epochs=1,
        out=out,
        overrides={"output.progress": False, "output.plots": False, "train.threads": 1},
        log=lambda s: None,
    )
    return result.run_dir


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("seed_cnn", num_classes=len(CLASSES), in_channels=1, input_size=28).eval()
    meta = {
        "architecture": "seed_cnn",
        "kwargs": {},
        "classes": CLASSES,
        "input_shape": [1, 28, 28],
        "mean": [0.13],
        "std": [0.31],
        "dataset": "folder:/home/someone/private/photos",  # must never show in a response
        "metrics": {"accuracy": 0.5},
    }
    return save_model_file(tmp_path_factory.mktemp("serve_model") / "model", model, meta)


@pytest.fixture(scope="session")
def onnx_model(model_dir, tmp_path_factory):
    """``model_dir`` exported to ONNX once per session (the export takes seconds)."""
    pytest.importorskip("onnxruntime")
    from cnnlab.export.onnx import export_onnx

    out, _ = export_onnx(model_dir, tmp_path_factory.mktemp("serve_onnx") / "model.onnx", parity_n=4)
    return out
