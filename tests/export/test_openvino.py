"""OpenVINO IR export: parity on the run's test images, metadata inside the IR, predict/serve taking the .xml,
the NNCF INT8 variant scored against FP32, and damaged files refused with one line."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")
from cnnlab.export.openvino import export_openvino, openvino_logits_fn, read_ir  # noqa: E402


@pytest.fixture(scope="module")
def ir(digits_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("ov") / "model.xml"
    path, report, int8 = export_openvino(digits_run, out, exporter="legacy", parity_n=32, int8=True, calibration=64)
    return path, report, int8


def test_export_is_parity_checked_on_the_runs_test_images(ir, digits_run):
    path, report, _ = ir
    assert report.ok and report.n == 32 and "split.csv" in report.source
    assert path.with_suffix(".bin").is_file()
    _, meta = read_ir(path)
    assert meta["classes"] == [str(i) for i in range(10)] and meta["input_shape"] == [1, 8, 8]
    fn = openvino_logits_fn(path)
    x = np.random.default_rng(0).normal(size=(3, 1, 8, 8)).astype(np.float32)  # any batch size (dynamic axis)
    from cnnlab.runs.model_file import load_model

    model, _ = load_model(digits_run)
    with torch.no_grad():
        np.testing.assert_allclose(fn(x), model(torch.from_numpy(x)).numpy(), atol=1e-4)


def test_int8_is_scored_against_fp32_on_the_test_split(ir):
    path, _, int8 = ir
    assert int8 is not None and int8.ok and int8.n > 100 and int8.calibration == 64
    assert int8.int8_accuracy >= int8.fp32_accuracy - 0.01 and int8.agreement > 0.9
    assert path.with_name("model-int8.xml").is_file() and "INT8 on" in int8.line()


def test_predict_and_serve_take_the_xml_like_onnx(ir, digits_run, tmp_path):
    from PIL import Image

    from cnnlab.serve.predictor import Predictor

    path, _, _ = ir
    images = np.random.default_rng(1).integers(0, 255, size=(4, 8, 8), dtype=np.uint8)
    files = []
    for i, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")
    ours, ref = Predictor(path), Predictor(digits_run)
    assert ours.kind == "openvino"
    a, b = ours.predict(files), ref.predict(files)
    assert [r["label"] for r in a] == [r["label"] for r in b]
    assert max(abs(x["probability"] - y["probability"]) for x, y in zip(a, b)) < 1e-4
    assert main(["predict", str(path), str(tmp_path), "--format", "csv"]) == 0
    with pytest.raises(CnnlabError, match="drop --device"):
        Predictor(path, device="cuda")


def test_damaged_or_foreign_ir_is_one_clear_error(ir, random_model, tmp_path):
    path, _, _ = ir
    copy = tmp_path / "m.xml"
    shutil.copy(path, copy)
    with pytest.raises(CnnlabError, match="m.bin is missing"):
        read_ir(copy)
    shutil.copy(path.with_suffix(".bin"), copy.with_suffix(".bin"))
    copy.write_text(path.read_text()[:500])
    with pytest.raises(CnnlabError, match="cannot be loaded by OpenVINO"):
        read_ir(copy)
    with pytest.raises(CnnlabError, match=r"\.xml file"):
        export_openvino(random_model, tmp_path / "x.onnx")


def test_cli_exports_openvino(random_model, tmp_path, capsys):
    args = ["export", str(random_model), "--format", "openvino", "--out", str(tmp_path), "--exporter", "legacy"]
    assert main([*args, "--parity-n", "4"]) == 0
    out = capsys.readouterr().out
    assert "model.xml" in out and "-> OK" in out and (tmp_path / "model.bin").is_file()
    assert main([*args, "--int8"]) == 1  # a model folder has no training images to calibrate on
    assert "INT8 needs a run folder" in capsys.readouterr().err
