"""The Python API covers the CLI: cnnlab.predict, cnnlab.export, cnnlab.lr_find and cnnlab.tune mirror their
commands (same options, same results), and stay callable however the package was imported."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.runs.model_file import save_model_file

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("seed_cnn", num_classes=3, in_channels=1, input_size=12).eval()
    meta = {"architecture": "seed_cnn", "kwargs": {}, "classes": CLASSES, "input_shape": [1, 12, 12]}
    return save_model_file(tmp_path_factory.mktemp("api") / "model", model, {**meta, "mean": [0.5], "std": [0.25]})


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for c in CLASSES:
        (root / c).mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_predict_returns_rows_or_streams_them_to_a_file(model_dir, photos, tmp_path):
    r = cnnlab.predict(model_dir, photos, topk=2)
    expected = cnnlab.Predictor(model_dir).predict(sorted(photos.rglob("*.png")), topk=2)
    assert [row["label"] for row in r.results] == [e["label"] for e in expected]
    assert r.metrics["num_samples"] == 12 and len(r.metrics["confusion_matrix"]) == 3
    out = tmp_path / "p.csv"
    streamed = cnnlab.predict(model_dir, [photos / "a", photos / "b"], output=out, topk=1)
    assert streamed.results is None and streamed.summary.predicted == 8
    assert len(list(csv.DictReader(out.open()))) == 8


def test_export_mirrors_the_command_and_stays_callable(model_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    import cnnlab.export.onnx  # noqa: F401 - importing the subpackage must not hide the function

    result = cnnlab.export(model_dir, "onnx", tmp_path / "m.onnx", exporter="legacy", parity_n=4)
    assert result.path == tmp_path / "m.onnx" and result.parity.ok and result.int8 is None
    assert cnnlab.Predictor(result.path).kind == "onnx"
    with pytest.raises(CnnlabError, match="does not take"):
        cnnlab.export(model_dir, "torchscript", tmp_path / "m.pt", opset=17)
    with pytest.raises(CnnlabError, match="unknown export format"):
        cnnlab.export(model_dir, "coreml")


def test_lr_find_mirrors_the_command():
    r = cnnlab.lr_find(data="digits", model="plain_mlp", steps=12, overrides={"train.threads": 1}, log=lambda s: None)
    assert len(r.lrs) >= 5 and r.suggestion > 0 and r.reason
    with pytest.raises(CnnlabError, match="unknown argument"):
        cnnlab.lr_find(dataset="digits")


def test_tune_takes_short_names_and_stays_callable(tmp_path):
    pytest.importorskip("optuna")
    import cnnlab.tune  # noqa: F401 - the module shares the function's name; it must still be callable

    space = {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
    result = cnnlab.tune(
        space=space, trials=1, epochs=1, data="digits", model="plain_mlp", out_dir=tmp_path / "study",
        overrides={"train.threads": 1, "output.root": str(tmp_path / "runs")}, log=lambda s: None,
    )  # fmt: skip
    assert result.best_value is not None and result.best_config.data.name == "digits"
    with pytest.raises(CnnlabError, match="unknown argument"):
        cnnlab.tune(space=space, dataset="digits")


def test_tune_command_takes_data_like_train():
    from cnnlab.cli import tune as tune_cli

    parser = argparse.ArgumentParser()
    tune_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["tune", "--space", "s.yaml", "--data", "digits", "--model", "plain_mlp", "--lr", "0.1"])
    assert vars(args)["cfg:data.name"] == "digits" and vars(args)["cfg:optim.lr"] == "0.1"
    assert args.epochs is None and args.seed == 0  # tune's own --epochs (per trial) and --seed (sampler)
