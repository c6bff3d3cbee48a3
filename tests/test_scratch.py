"""The NumPy-engine training loop, run folder and ``cnnlab scratch`` command."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

import cnnlab.numpy_engine as ne
from cnnlab.cli.main import main
from cnnlab.scratch import Batches, ScratchConfig, fit


def test_batches_normalise_to_float32_nchw():
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3, 2), dtype=np.uint8)  # (N, H, W, C)
    mean, std = np.array([0.5, 0.25]), np.array([0.2, 0.4])
    x, _ = Batches(images, np.arange(5), mean, std).get(slice(1, 3))
    assert x.shape == (2, 2, 4, 3) and x.dtype == np.float32
    expected = (images[1:3].transpose(0, 3, 1, 2) / 255 - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-6)


def test_cli_train_writes_the_run_folder(tmp_path, capsys):
    code = main(
        ["scratch", "train", "--model", "allconv", "--data", "digits", "--epochs", "3", "--lr", "0.01",
         "--out", str(tmp_path), "--name", "r", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    run = tmp_path / "r"
    for f in ("config.yaml", "env.json", "split.csv", "data.json", "history.csv", "metrics.json"):
        assert (run / f).is_file(), f
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["engine"] == "numpy" and cfg["model"] == "allconv" and cfg["epochs"] == 3
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert len(metrics["confusion_matrix"]) == 10
    # the saved weights reproduce the reported test accuracy
    model = ne.allconv(in_channels=1, input_size=8, num_classes=10)
    meta = ne.load_npz(model, run / "model" / "weights.npz")
    assert meta["architecture"] == "allconv" and meta["metrics"]["accuracy"] == metrics["accuracy"]
    assert "test accuracy" in capsys.readouterr().out
    # predict (and serve) load the NumPy run and reproduce its test accuracy from raw uint8 images
    from cnnlab.data.datasets import load_dataset
    from cnnlab.serve.predictor import Predictor

    predictor = Predictor(run)
    ds = load_dataset("digits")
    got = [r["index"] for r in predictor.predict(list(ds.test_images))]
    assert predictor.kind == "numpy" and np.mean(np.array(got) == ds.test_labels) == metrics["accuracy"]


def test_fit_accepts_a_dataset_and_learns_a_separable_task(tmp_path):
    """Bright-left vs bright-right images: LeNet must get them right after two epochs."""
    from cnnlab.data.datasets import ArrayDataset

    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 2, n)
        x = rng.integers(0, 60, (n, 28, 28, 1)).astype(np.uint8)
        for i, label in enumerate(y):
            x[i, :, label * 14 : label * 14 + 14] += 150
        return x, y.astype(np.int64)

    (xtr, ytr), (xte, yte) = make(256), make(64)
    ds = ArrayDataset("toy", ["left", "right"], xtr, ytr, xte, yte)
    cfg = ScratchConfig(
        data="toy", epochs=2, batch_size=32, val_fraction=0.0, output_root=str(tmp_path), progress=False
    )
    result = fit(cfg, log=lambda s: None, dataset=ds)
    assert result.metrics["accuracy"] >= 0.95
    assert "val_acc" not in result.history[0]  # no validation split requested


@pytest.mark.parametrize("argv,match", [
    (["--optimizer", "adan"], "adam"),
    (["--model", "lenet5"], "lenet"),
    (["--epochs", "0"], "epochs"),
    (["--model", "allconv", "--optimizer", "sgd", "--nesterov", "--momentum", "0"], "Nesterov"),
    (["--model", "lenet"], "input sizes"),
])  # fmt: skip
def test_cli_user_errors_are_one_clear_line(tmp_path, capsys, argv, match):
    code = main(["scratch", "train", "--data", "digits", "--out", str(tmp_path), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 1 and match in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # no half-written run folder


def test_cli_gradcheck_prints_every_case(capsys):
    assert main(["scratch", "gradcheck", "pool"]) == 0
    out = capsys.readouterr().out
    assert "MaxPool2d(3,s2,p1)" in out and "AvgPool2d(2)" in out and "passed" in out
