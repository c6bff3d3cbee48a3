"""Compression: INT8 (dynamic, static), magnitude pruning with fine-tuning, distillation; tables and outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError
from cnnlab.export.compress import distillation_loss, prune_model, quantize_int8, sparsity
from cnnlab.runs.model_file import load_model
from cnnlab.serve.predictor import Predictor


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_quantisation_table_and_file(digits_run, tmp_path, mode):
    pytest.importorskip("onnxruntime")
    from cnnlab.export.onnx import onnx_logits_fn, read_onnx_meta

    result = quantize_int8(digits_run, mode, out=tmp_path / mode, calibration=64, runs=2, threads=1, exporter="legacy")
    names = [r.name for r in result.rows]
    assert names == ["torch fp32 (original)", "onnxruntime fp32", f"onnxruntime int8 {mode}"]
    torch_row, fp32_row, int8_row = result.rows
    assert fp32_row.agreement == 1.0 and fp32_row.accuracy == torch_row.accuracy
    assert int8_row.size_mb < 0.45 * fp32_row.size_mb  # INT8 weights: about a quarter of the fp32 bytes
    assert int8_row.agreement > 0.7 and int8_row.accuracy > 0.3  # chance is 0.1
    int8 = result.out / f"model.int8-{mode}.onnx"
    assert read_onnx_meta(int8)["classes"] == [str(i) for i in range(10)]
    assert onnx_logits_fn(int8, threads=1)(np.zeros((5, 1, 8, 8), np.float32)).shape == (5, 10)
    report = json.loads((result.out / "compression.json").read_text())
    assert report["method"] == f"int8-{mode}" and len(report["rows"]) == 3
    table = result.table()
    assert "int8" in table and "ms/img b1" in table and "agree" in table


def test_pruning_zeroes_the_smallest_weights_and_keeps_them_zero(digits_run, tmp_path):
    result = prune_model(digits_run, amount=0.6, finetune_epochs=1, out=tmp_path / "p", runs=2, threads=1)
    original, pruned, tuned = result.rows
    assert pruned.params < 0.5 * original.params and tuned.params == pruned.params
    assert tuned.gzip_mb < original.gzip_mb and tuned.size_mb == pytest.approx(original.size_mb, rel=0.01)
    model, meta = load_model(result.out)  # a normal model file: predict/serve/export work on it
    assert sparsity(model) == pytest.approx(0.6, abs=0.01)
    assert meta["compression"]["amount"] == 0.6 and result.extra["sparsity"] == pytest.approx(0.6, abs=0.01)
    # global magnitude pruning: every surviving weight is at least as large as every removed one
    before, _ = load_model(digits_run)
    w0 = torch.cat([m.weight.flatten() for m in before.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))])
    kept = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))])
    assert ((kept == 0) == (w0.abs() <= w0.abs().kthvalue(int(0.6 * len(w0))).values)).float().mean() > 0.999
    assert Predictor(result.out).predict(np.zeros((8, 8), np.uint8))[0]["label"] in meta["classes"]
    with pytest.raises(CnnlabError, match="between 0 and 1"):
        prune_model(digits_run, amount=1.5)


def test_distillation_loss_matches_its_formula():
    torch.manual_seed(0)
    s, t, y = torch.randn(6, 4), torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    T, a = 3.0, 0.6
    p_t = torch.softmax(t / T, 1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / T, 1))).sum(1).mean()
    want = a * T * T * kl + (1 - a) * torch.nn.functional.cross_entropy(s, y)
    torch.testing.assert_close(distillation_loss(s, t, y, T, a), want)
    assert distillation_loss(t, t, y, T, 1.0).abs() < 1e-6  # a perfect mimic has no soft loss


def test_cli_distill_writes_a_smaller_student(digits_run, tmp_path, capsys):
    out = tmp_path / "student"
    args = ["compress", str(digits_run), "--method", "distill", "--epochs", "1", "--out", str(out)]
    assert main([*args, "--runs", "2", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "teacher seed_cnn" in text and "seed_cnn distilled" in text and "compression.json" in text
    student, meta = load_model(out)
    teacher, tmeta = load_model(digits_run)
    n = sum(p.numel() for p in student.parameters())
    assert n < sum(p.numel() for p in teacher.parameters()) / 10
    assert meta["classes"] == tmeta["classes"] and meta["mean"] == tmeta["mean"]
    assert meta["compression"]["teacher"] == "seed_cnn" and "config" not in meta
    assert main([*args, "--student-kwargs", "[1, 2]"]) == 1
    assert "JSON object" in capsys.readouterr().err
