"""Batch prediction over folders: streamed (results leave before the walk ends), the Predictor's answers on
every backend, atomic CSV / JSON Lines output, bad files reported and skipped, and accuracy plus the
confusion matrix on a class-per-folder directory."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import digit_like, encode

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError
from cnnlab.serve import batch
from cnnlab.serve.batch import class_folder, iter_images, predict_files, predict_stream
from cnnlab.serve.predictor import Predictor

CLASSES = [f"class_{i}" for i in range(10)]  # the classes of the model_dir fixture


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """class_0..class_2 with 5 PNGs each (sizes vary, so some are resized), plus one broken file."""
    root = tmp_path_factory.mktemp("labelled")
    for c in range(3):
        (root / f"class_{c}").mkdir()
        for i in range(5):
            (root / f"class_{c}" / f"{i:02d}.png").write_bytes(encode(digit_like(28 if i % 2 else 40, 10 * c + i)))
    (root / "class_1" / "broken.png").write_bytes(b"<html>no</html>")
    (root / ".hidden").mkdir()
    return root


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor(model_dir)


def _good_files(root):
    return [Path(p) for p in iter_images([root]) if not p.endswith("broken.png")]


def test_walk_is_sorted_lazy_and_skips_hidden(labelled):
    files = list(iter_images([labelled]))
    assert files == sorted(files) and len(files) == 16 and not any(".hidden" in p for p in files)
    assert class_folder([labelled], CLASSES) == labelled
    assert class_folder([labelled / "class_0"], CLASSES) is None  # no class subfolders there
    assert class_folder([labelled], ["class_0"]) is None  # a subfolder that is not a class


def test_stream_gives_the_predictors_answers_and_the_confusion_matrix(labelled, predictor):
    rows, errors = [], []

    def on_error(path, exc):
        errors.append(path)

    kw = {"batch_size": 4, "workers": 2, "topk": 3}
    summary = predict_stream(predictor, [labelled], **kw, on_result=rows.append, on_error=on_error)
    files = _good_files(labelled)
    assert [r["path"] for r in rows] == [str(p) for p in files]
    expected = predictor.predict(files, topk=3)
    assert [r["index"] for r in rows] == [e["index"] for e in expected]
    np.testing.assert_allclose([r["probability"] for r in rows], [e["probability"] for e in expected], atol=1e-6)
    assert [p.name for p in errors] == ["broken.png"] and summary.errors == 1 and summary.predicted == 15
    truth = [int(p.parent.name.split("_")[1]) for p in files]
    m = summary.metrics
    assert m["accuracy"] == pytest.approx(np.mean([e["index"] == t for e, t in zip(expected, truth)]))
    cm = np.zeros((10, 10), int)
    for e, t in zip(expected, truth):
        cm[t, e["index"]] += 1
    assert m["confusion_matrix"] == cm.tolist() and rows[0]["true_label"] == "class_0"


def test_results_leave_before_the_walk_ends(labelled, predictor, monkeypatch):
    """Streaming: the first result is handed on while most files have not even been listed."""
    walked, seen_at_first = [0], []
    real = batch.iter_images

    def counting(patterns):
        for p in real(patterns):
            walked[0] += 1
            yield p

    monkeypatch.setattr(batch, "iter_images", counting)

    def on_result(r):
        if not seen_at_first:
            seen_at_first.append(walked[0])

    predict_stream(predictor, [labelled], batch_size=2, workers=1, on_result=on_result, on_error=lambda p, e: None)
    assert walked[0] == 16 and seen_at_first[0] <= 8  # 2 per batch, at most workers + 2 batches read ahead


def test_cli_class_folder_prints_accuracy_and_writes_csv_atomically(labelled, model_dir, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    assert main(["predict", str(model_dir), str(labelled), "-o", str(out), "--top-k", "2", "--workers", "2"]) == 1
    text, err = capsys.readouterr()
    assert "broken.png" in err and "1 of 16 file(s) could not be read" in err
    assert f"wrote {out}" in text and "accuracy" in text and "confusion matrix" in text and "images/s" in text
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 30 and {r["rank"] for r in rows} == {"1", "2"} and rows[0]["true_label"] == "class_0"
    assert not list(tmp_path.glob(".*tmp"))  # the atomic writer left no temporary behind


def test_cli_jsonl_to_stdout_keeps_text_out_of_the_rows(labelled, model_dir, capsys):
    assert main(["predict", str(model_dir), str(labelled / "class_2"), "--format", "jsonl"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 5 and all("top" in r for r in rows) and "images/s" in err


def test_cli_progress_bar_goes_to_stderr(labelled, model_dir, capsys):
    assert main(["predict", str(model_dir), str(labelled / "class_0"), "--progress", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert "5/5" in err and "predict" in err and out.startswith("path,rank")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_backends_agree_with_torch(labelled, model_dir, predictor, backend, capsys):
    pytest.importorskip("onnxruntime")
    if backend == "openvino":
        pytest.importorskip("openvino")
    rows = []
    summary = predict_files(model_dir, [labelled / "class_1"], backend=backend, on_result=rows.append)
    assert summary.backend == {"onnxruntime": "onnx", "openvino": "openvino"}[backend]
    expected = predictor.predict(_good_files(labelled / "class_1"))
    assert [r["index"] for r in rows] == [e["index"] for e in expected]
    np.testing.assert_allclose([r["probability"] for r in rows], [e["probability"] for e in expected], atol=1e-4)


def test_refusals_come_before_any_work(model_dir, onnx_model, labelled, tmp_path):
    with pytest.raises(CnnlabError, match="no such file"):
        predict_files(model_dir, [tmp_path / "missing"])
    with pytest.raises(CnnlabError, match="runs on onnxruntime"):
        predict_files(onnx_model, [labelled], backend="openvino")
    with pytest.raises(CnnlabError, match="--format"):
        predict_files(model_dir, [labelled], output=tmp_path / "x.xlsx")
    assert not (tmp_path / "x.xlsx").exists()


def test_uint8_fast_path_is_the_decoding_rule_bit_for_bit():
    from PIL import Image

    from cnnlab.data.images import to_array, uint8_pixels

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8))
    gray = Image.fromarray(rng.integers(0, 256, (9, 9), dtype=np.uint8))
    for img, c in ((rgb, 3), (gray, 1)):
        fast = uint8_pixels(img, c).astype(np.float32) / 255.0
        assert fast.dtype == np.float32 and np.array_equal(fast, to_array(img, c))
    assert uint8_pixels(rgb, 1) is None and uint8_pixels(rgb.convert("RGBA"), 3) is None
    assert uint8_pixels(rgb.convert("P"), 3) is None
    gray.info["transparency"] = 0
    assert uint8_pixels(gray, 1) is None


def test_csv_cells_are_escaped_against_spreadsheet_formulas(model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths: the cell starts with the folder's name
    Path("=HYPERLINK(1)").mkdir()
    Path("=HYPERLINK(1)/a.png").write_bytes(encode(digit_like(28)))
    predict_files(model_dir, ["=HYPERLINK(1)"], output="p.csv", topk=1)
    text = Path("p.csv").read_text()
    assert "\n'=HYPERLINK(1)" in text and "\n=" not in text  # the cell is quoted, never a formula
    from cnnlab.files import tables

    with open("p.csv", newline="") as f:
        rows = list(tables.DictReader(f))
    assert rows[0]["path"] == "=HYPERLINK(1)/a.png"
