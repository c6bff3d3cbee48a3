"""TensorBoard events read back with tensorboard's own reader; MLflow calls through a fake module."""

from __future__ import annotations

import sys
import types

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from cnnlab.api import train  # noqa: E402
from cnnlab.config import load_config  # noqa: E402
from cnnlab.engine.tracking import tracking_callbacks  # noqa: E402
from cnnlab.errors import CnnlabError  # noqa: E402


@pytest.fixture
def quick(tmp_path) -> dict:
    return {
        "data.name": "digits",
        "model.name": "mnist_cnn",  # convolutions, so the graph has conv nodes
        "data.batch_size": 64,
        "train.epochs": 2,
        "train.threads": 1,
        "output.root": str(tmp_path / "runs"),
        "output.progress": False,
        "output.plots": False,
    }


def test_tensorboard_scalars_images_graph(quick):
    res = train(overrides={**quick, "output.tensorboard": True}, log=lambda s: None)
    logdir = res.run_dir / "tensorboard"
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("loss/train", "loss/val", "accuracy/train", "accuracy/val", "macro_f1/val", "lr"):
        assert [e.step for e in acc.Scalars(tag)] == [1, 2], tag
    val = [e.value for e in acc.Scalars("accuracy/val")]
    assert val == pytest.approx([r["val_acc"] for r in res.history])
    assert acc.Scalars("test/accuracy")[0].value == pytest.approx(res.metrics["accuracy"])
    assert "inputs/first_batch" in tags["images"] and "test/confusion_matrix" in tags["images"]
    assert tags["graph"] is True
    assert any(node.op == "aten::_convolution" for node in acc.Graph().node)


def test_tensorboard_logging_does_not_change_training(quick):
    # The graph and image batch are taken after epoch 1 (dropout RNG, data generator); epoch 2 must not notice.
    plain = train(overrides=quick, log=lambda s: None)
    logged = train(overrides={**quick, "output.tensorboard": True}, log=lambda s: None)
    assert [r["val_loss"] for r in logged.history] == [r["val_loss"] for r in plain.history]


def test_mlflow_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    cfg = load_config(overrides={"output.mlflow": True})
    with pytest.raises(CnnlabError, match="pip install mlflow"):
        tracking_callbacks(cfg, tmp_path)


def test_mlflow_calls_with_a_fake_module(monkeypatch, quick):
    calls = []
    fake = types.ModuleType("mlflow")
    fake.active_run = lambda: None
    for name in ("start_run", "log_params", "set_tag", "log_metrics", "log_artifact", "end_run"):
        monkeypatch.setattr(fake, name, lambda *a, _n=name, **k: calls.append((_n, a, k)), raising=False)
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    res = train(overrides={**quick, "output.mlflow": True}, log=lambda s: None)
    names = [c[0] for c in calls]
    assert names[0] == "start_run" and names[-1] == "end_run"
    params = next(c[1][0] for c in calls if c[0] == "log_params")
    assert params["optim.lr"] == res.config.optim.lr and params["data.name"] == "digits"
    steps = [c[2]["step"] for c in calls if c[0] == "log_metrics"]
    assert steps == [1, 2, 2]  # two epochs, then the test metrics
    logged = [c[1][0] for c in calls if c[0] == "log_artifact"]
    assert any(p.endswith("metrics.json") for p in logged)


def test_only_rank_zero_tracks(monkeypatch, tmp_path):
    import torch.distributed as dist

    cfg = load_config(overrides={"output.tensorboard": True})
    assert len(tracking_callbacks(cfg, tmp_path)) == 1
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    assert tracking_callbacks(cfg, tmp_path / "rank1") == []
    assert not (tmp_path / "rank1").exists()
