"""Predictor and ``cnnlab predict``: evaluation-identical results, every input kind, file discovery, output formats."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from serve_helpers import digit_like, encode

from cnnlab.cli.main import main
from cnnlab.data.datasets import load_dataset
from cnnlab.data.pipeline import eval_loader
from cnnlab.engine.loop import predict as loop_predict
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.runs.meta import check_model_meta
from cnnlab.runs.model_file import save_model_file
from cnnlab.serve.predictor import Predictor, array_to_float, expand_inputs


@pytest.fixture(scope="module")
def digits_pngs(trained_run, tmp_path_factory):
    """The first 40 test images of digits written as 8-bit PNG files, with evaluate's logits for them."""
    predictor = Predictor(trained_run)
    ds = load_dataset("digits")
    logits, targets = loop_predict(predictor.model, eval_loader(ds, "test", predictor.meta, "cpu"))
    folder = tmp_path_factory.mktemp("digits_png")
    paths = []
    for i in range(40):
        p = folder / f"{ds.classes[targets[i]]}" / f"{i:03d}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(ds.test_images[i][..., 0]).save(p)
        paths.append(p)
    return predictor, paths, logits[:40]


def test_predictions_on_files_equal_evaluation(digits_pngs):
    predictor, paths, eval_logits = digits_pngs
    x = predictor.preprocess([predictor.load(p) for p in paths])
    logits = predictor.logits(x).numpy()
    np.testing.assert_allclose(logits, eval_logits, rtol=0, atol=1e-5)  # only batch-size rounding differs
    results = predictor.predict(paths, topk=3)
    assert [r["index"] for r in results] == eval_logits.argmax(1).tolist()
    assert all(len(r["top"]) == 3 and r["top"][0]["label"] == r["label"] for r in results)


def test_every_input_kind_gives_the_same_answer(model_dir, tmp_path):
    p = Predictor(model_dir)
    img = digit_like(28, seed=2)
    path = tmp_path / "d.png"
    img.save(path)
    arr8 = np.asarray(img)
    inputs = [path, str(path), encode(img), img, img.convert("RGB"), img.convert("RGBA"), img.convert("LA")]
    inputs += [arr8, arr8[..., None], np.repeat(arr8[..., None], 3, axis=2), arr8.astype(np.float32) / 255]
    palette = Image.frombytes("P", img.size, img.tobytes())  # palette index = gray value
    palette.putpalette([v for i in range(256) for v in (i, i, i)])
    sixteen = Image.fromarray(arr8.astype(np.uint16) * 257)  # I;16: v * 257 / 65535 == v / 255
    inputs += [palette, encode(palette, "GIF"), sixteen, encode(sixteen), encode(img, "TIFF")]
    ref = p.predict(path, topk=10)[0]
    for item in inputs:
        got = p.predict([item], topk=10)[0]
        assert got["label"] == ref["label"], type(item)
        np.testing.assert_allclose(
            [t["probability"] for t in got["top"]], [t["probability"] for t in ref["top"]], atol=1e-5
        )


def test_resizing_matches_the_folder_loader(model_dir):
    p = Predictor(model_dir)
    big = digit_like(70, seed=4)
    arr = np.asarray(big, dtype=np.float32)[..., None] / 255
    want = F.interpolate(
        torch.from_numpy(arr).permute(2, 0, 1)[None],
        size=(28, 28),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )[0].clamp(0, 1)
    torch.testing.assert_close(p.to_input(p.load(big)), want, rtol=0, atol=0)
    x = p.preprocess([p.load(big)])
    torch.testing.assert_close(x[0], (want - 0.13) * (1 / torch.tensor(0.31)))


def test_array_rules():
    assert array_to_float(np.zeros((4, 4), np.uint16), 3).shape == (4, 4, 3)
    white = array_to_float(np.zeros((2, 2, 4), np.uint8), 1)  # transparent -> white
    assert np.allclose(white, 1.0)
    with pytest.raises(CnnlabError, match="image array"):
        array_to_float(np.zeros((2, 2, 5)), 3)


def test_model_json_is_checked(model_dir, tmp_path):
    good = {"classes": ["a", "b"], "input_shape": [3, 8, 8], "mean": [0, 0, 0], "std": [1, 1, 1]}
    check_model_meta(good, "model.json", rebuild=False)
    for bad, match in [
        ({"classes": ["a", "a"]}, "unique"),
        ({"classes": []}, "classes"),
        ({"input_shape": [2, 8, 8]}, "input_shape"),
        ({"input_shape": [3, 8, 9]}, "input_shape"),
        ({"mean": [0, 0]}, "mean"),
        ({"std": [1, 0, 1]}, "positive"),
    ]:
        with pytest.raises(CnnlabError, match=match):
            check_model_meta({**good, **bad}, "model.json", rebuild=False)
    # the same checks guard a model file on load
    model = create_model("seed_cnn", num_classes=3, in_channels=1, input_size=28)
    meta = {"architecture": "seed_cnn", "kwargs": {}, "classes": ["a", "a", "c"], "input_shape": [1, 28, 28]}
    folder = save_model_file(tmp_path / "m", model, {**meta, "mean": [0.1], "std": [0.3]})
    with pytest.raises(CnnlabError, match="unique"):
        Predictor(folder)


def test_expand_inputs_files_folders_globs(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/1.png", "a/2.JPG", "a/notes.txt", "a/.hidden.png", "b.png"):
        (tmp_path / name).write_bytes(b"x")
    got = expand_inputs([tmp_path / "a", str(tmp_path / "*.png"), tmp_path / "b.png"])
    assert [p.name for p in got] == ["1.png", "2.JPG", "b.png"]
    with pytest.raises(CnnlabError, match="no such file"):
        expand_inputs([tmp_path / "missing.png"])
    with pytest.raises(CnnlabError, match="matches no files"):
        expand_inputs([str(tmp_path / "*.webp")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnlabError, match="no image files"):
        expand_inputs([tmp_path / "empty"])


def test_cli_predict_formats_and_bad_files(digits_pngs, trained_run, capsys):
    predictor, paths, eval_logits = digits_pngs
    folder = paths[0].parent.parent
    assert main(["predict", str(trained_run), str(folder), "--format", "json", "--top-k", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(paths) and all(len(r["top"]) == 2 for r in rows)
    by_path = {r["path"]: r["index"] for r in rows}
    assert [by_path[str(p)] for p in paths] == eval_logits.argmax(1).tolist()

    assert main(["predict", str(trained_run), str(folder / "*" / "00[0-4].png"), "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["rank"] for r in table} == {"1", "2", "3", "4", "5"} and len({r["path"] for r in table}) == 5

    bad = folder / "broken.png"
    bad.write_bytes(b"<html>not an image</html>")
    try:
        code = main(["predict", str(trained_run), str(paths[0]), str(bad), "--batch-size", "1"])
    finally:
        bad.unlink()
    out, err = capsys.readouterr()
    assert code == 1 and "broken.png" in err and "HTML" in err
    assert str(paths[0]) in out and "top-k" in out

    assert main(["predict", str(trained_run), str(folder / "nothing.png")]) == 1
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_files_predict_like_the_model_folder(digits_pngs, trained_run, tmp_path, fmt, capsys):
    predictor, paths, _ = digits_pngs
    if fmt == "onnx":
        from cnnlab.export.onnx import export_onnx as export
    else:
        from cnnlab.export.torchscript import export_torchscript as export
    out, _ = export(trained_run, tmp_path / ("model.onnx" if fmt == "onnx" else "model.torchscript.pt"))
    trust = fmt == "torchscript"  # TorchScript is code: loaded only with the opt-in
    exported = Predictor(out, trust_torchscript=trust)
    assert exported.kind == fmt and exported.classes == predictor.classes
    a, b = predictor.predict(paths[:10]), exported.predict(paths[:10])
    assert [r["label"] for r in a] == [r["label"] for r in b]
    assert np.allclose([r["probability"] for r in a], [r["probability"] for r in b], atol=1e-4)
    flags = ["--trust-torchscript"] if trust else []
    assert main(["predict", str(out), str(paths[0]), "--format", "json", *flags]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"] == a[0]["label"]


def test_an_onnx_file_on_a_gpu_device_is_refused(tmp_path):
    bogus = tmp_path / "m.onnx"
    bogus.write_bytes(b"not onnx")
    with pytest.raises(CnnlabError, match="runs on the CPU"):
        Predictor(bogus, device="cuda")


def test_evaluating_a_small_folder_forks_no_loader_workers(digits_pngs, monkeypatch):
    # 40 files decode in-process faster than two forked workers start; a long-lived process that has
    # loaded threaded runtimes (a test session with ONNX Runtime and OpenVINO) lost its xdist worker here
    import cnnlab.data.pipeline as pipeline

    predictor, paths, _ = digits_pngs
    ds = load_dataset(f"folder:{paths[0].parents[1]}")
    assert eval_loader(ds, "all", predictor.meta, "cpu").loader.num_workers == 0
    monkeypatch.setattr(pipeline, "MIN_FILES_FOR_WORKERS", 10)
    assert eval_loader(ds, "all", predictor.meta, "cpu").loader.num_workers == 2
