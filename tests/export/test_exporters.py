"""ONNX and TorchScript export: dynamic batch, embedded metadata, parity checks that pass and fail loudly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError
from cnnlab.export.parity import MAX_PROB_DIFF, compare, parity_inputs, require, torch_logits_fn
from cnnlab.export.torchscript import export_torchscript, load_torchscript
from cnnlab.runs.model_file import load_model


def test_parity_inputs_are_real_test_images_when_available(digits_run, random_model):
    model, meta = load_model(digits_run)
    x, source = parity_inputs(meta, 16)
    assert source == "test images of digits" and x.shape == (16, 1, 8, 8) and x.dtype == np.float32
    assert len(np.unique(x)) > 10  # real pixels, normalised: not constant
    _, rmeta = load_model(random_model)
    xr, rsource = parity_inputs(rmeta, 5)
    assert "random" in rsource and xr.shape == (5, 3, 16, 16)
    assert "nonexistent" not in rsource


def test_compare_detects_disagreement_and_small_drift():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)

    def ref(x):
        return net(torch.from_numpy(x)).detach().numpy()

    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    assert compare(ref, ref, x).ok
    drift = compare(ref, lambda x: ref(x) + np.array([0.0, 1e-2, 0.0], np.float32), x)
    assert drift.agreement > 0.9 and drift.max_prob_diff > MAX_PROB_DIFF and not drift.ok
    with pytest.raises(CnnlabError, match="does not reproduce the original model.*FAILED"):
        require(drift, "the test export")
    swapped = compare(ref, lambda x: ref(x)[:, ::-1].copy(), x)
    assert swapped.agreement < 1.0 and not swapped.ok
    with pytest.raises(CnnlabError, match="shape"):
        compare(ref, lambda x: ref(x)[:, :2], x)


def test_onnx_export_dynamic_batch_metadata_and_parity(digits_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from cnnlab.export.onnx import export_onnx, onnx_logits_fn, read_onnx_meta

    out, report = export_onnx(digits_run, tmp_path / "digits.onnx", parity_n=40)
    assert report.ok and report.n == 40 and report.agreement == 1.0 and report.max_prob_diff <= MAX_PROB_DIFF
    assert report.source == "test images of digits (the run's split.csv)"
    meta = read_onnx_meta(out)
    _, original = load_model(digits_run)
    assert meta["classes"] == original["classes"] and meta["mean"] == original["mean"]
    assert meta["input_shape"] == [1, 8, 8] and "bilinear" in meta["resize"]
    import onnx

    graph = onnx.load(str(out)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["classes"]) == original["classes"]
    run = onnx_logits_fn(out, threads=1)
    for batch in (1, 3, 130):
        assert run(np.zeros((batch, 1, 8, 8), np.float32)).shape == (batch, 10)


def test_torchscript_export_dynamic_batch_metadata_and_parity(random_model, tmp_path):
    out, report = export_torchscript(random_model, tmp_path / "m.pt", parity_n=20)
    assert report.ok and "random" in report.source
    module, meta = load_torchscript(out)
    assert meta["classes"] == ["cat", "dog", "fox"] and meta["std"] == [0.2, 0.2, 0.2]
    assert meta["dataset"] == "folder"  # no path travels with the file
    original, _ = load_model(random_model)
    x = torch.randn(9, 3, 16, 16)
    torch.testing.assert_close(module(x), original(x), rtol=1e-5, atol=1e-6)
    bad = tmp_path / "not.pt"
    bad.write_bytes(b"nope")
    with pytest.raises(CnnlabError, match="not a TorchScript file"):
        load_torchscript(bad)


def test_cli_export_both_formats_and_loud_failure(digits_run, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    assert main(["export", str(digits_run), "--format", "torchscript", "--output", str(tmp_path / "a.pt")]) == 0
    out = capsys.readouterr().out
    assert "a.pt" in out and "agreement 100.00%" in out and "-> OK" in out
    args = ["export", str(digits_run), "--output", str(tmp_path / "a.onnx"), "--parity-n", "8", "--exporter", "legacy"]
    assert main(args) == 0
    assert "parity on 8 test images of digits" in capsys.readouterr().out
    # an exporter that changes the answers must make the command fail with a clear message
    import cnnlab.export.torchscript as ts

    real = ts.torch_logits_fn

    def skewed(model):
        fn = real(model)
        return (lambda x: fn(x) * 1.5) if isinstance(model, torch.jit.ScriptModule) else fn

    monkeypatch.setattr(ts, "torch_logits_fn", skewed)
    code = main(["export", str(digits_run), "--format", "torchscript", "--output", str(tmp_path / "b.pt")])
    err = capsys.readouterr().err
    assert code == 1 and "does not reproduce the original model" in err and "FAILED" in err
    assert "Traceback" not in err
    assert torch_logits_fn is real  # the module's own name stays untouched


def test_a_failed_export_leaves_no_file_behind(random_model, tmp_path, monkeypatch):
    """Nothing half-written under the final name (a kill, a full disk or a failure between writes)."""
    pytest.importorskip("onnxruntime")
    import cnnlab.export.onnx as onnx_export

    def disk_full(path, meta):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(onnx_export, "write_metadata", disk_full)
    with pytest.raises(OSError):
        onnx_export.export_onnx(random_model, tmp_path / "m.onnx", parity_n=4, exporter="legacy")
    assert list(tmp_path.iterdir()) == []  # neither m.onnx nor its temporary file


@pytest.mark.parametrize(("dataset", "shown"), [("folder:/home/ana/pics", "folder"), ("csv:/srv/x/labels.csv", "csv")])
def test_exported_metadata_carries_no_data_path(dataset, shown):
    # a CSV run's dataset is csv:/absolute/path: only folder: paths were stripped before
    from cnnlab.export.parity import public_meta

    meta = {"architecture": "seed_cnn", "classes": ["a", "b"], "input_shape": [1, 8, 8], "mean": [0.5], "std": [0.5]}
    assert public_meta({**meta, "dataset": dataset})["dataset"] == shown
    assert public_meta({**meta, "dataset": "cifar10"})["dataset"] == "cifar10"
