"""Every command on every kind of run cnnlab writes: no traceback, exit 0 or a clear refusal.

The run kinds are built once per session on small data (scikit-learn's digits and a little photo
folder made here): PyTorch on a named dataset, PyTorch on an image folder trained with
``--on-bad-image skip`` (a truncated JPEG, an exact copy and a near-duplicate in it), PyTorch on the
same photos listed in a label CSV (``csv:FILE``, with a split column), a fine-tuned run, a tuning
trial, a cross-validation fold (its test split cut from digits' training split) and a NumPy-engine
run. A DDP run writes the same folder as these (rank 0 writes it; tests/engine/test_distributed.py
checks that), so its one difference, ``env.json``'s world size, is checked by ``open_run`` here.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab.cli.main import main
from cnnlab.runs.run import open_run

FAST = {"output.progress": False, "train.threads": 1, "data.num_workers": 0}
KINDS = ["dataset", "folder-skip", "csv", "finetuned", "trial", "cv-fold", "numpy"]


def _photo_folder(root: Path) -> Path:
    """3 classes x 24 RGB 'photos' (digits 0-2, 24x24), a truncated JPEG, an exact copy
    ('IMG_0006 copy.jpg') and a near-duplicate (the same picture saved again at another quality)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    for label, name in enumerate(["zero", "one", "two"]):
        (root / name).mkdir(parents=True)
        for i, img in enumerate(d.images[d.target == label][:24]):
            g = (img * 255 / 16).astype(np.uint8)
            rgb = np.stack([g, np.flipud(g), 255 - g], -1)
            Image.fromarray(rgb).resize((24, 24)).save(root / name / f"IMG_{i:04d}.jpg", quality=95)
    shutil.copy(root / "zero" / "IMG_0006.jpg", root / "zero" / "IMG_0006 copy.jpg")
    Image.open(root / "one" / "IMG_0003.jpg").save(root / "one" / "IMG_0003-small.jpg", quality=70)
    (root / "two" / "IMG_9999.jpg").write_bytes((root / "two" / "IMG_0001.jpg").read_bytes()[:150])
    return root


def _labels_csv(photos: Path, path: Path) -> Path:
    """A label CSV beside the photo folder (paths relative to it, a split column, ';'-separated, with a
    byte-order mark as Excel writes it): the readable photos, the last 6 of each class to test."""
    lines = ["\ufeffFile;Class;Split"]
    for label in ("zero", "one", "two"):
        files = sorted(p for p in (photos / label).iterdir() if p.name != "IMG_9999.jpg")
        lines += [
            f"photos/{label}/{p.name};{label};{'test' if i >= len(files) - 6 else 'train'}" for i, p in enumerate(files)
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("matrix")
    out = base / "runs"
    quiet = {"log": lambda s: None}
    made = {"dataset": cnnlab.train(data="digits", epochs=1, out=out, overrides=FAST, **quiet).run_dir}
    folder = _photo_folder(base / "photos")
    skip = {**FAST, "data.on_bad_image": "skip", "data.max_bad_fraction": 0.2, "data.test_fraction": 0.25}
    made["folder-skip"] = cnnlab.train(
        data=f"folder:{folder}", image_size=16, epochs=1, out=out, overrides=skip, **quiet
    ).run_dir
    labels = _labels_csv(folder, base / "labels.csv")
    made["csv"] = cnnlab.train(data=f"csv:{labels}", image_size=16, epochs=1, out=out, overrides=FAST, **quiet).run_dir
    tune = {**FAST, "model.pretrained": str(made["dataset"]), "model.finetune": "feature_extraction"}
    made["finetuned"] = cnnlab.train(data="digits", epochs=1, out=out, overrides=tune, **quiet).run_dir
    from cnnlab.tune import tune as run_tune

    space = {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
    run_tune(
        None,
        space,
        trials=1,
        overrides={**FAST, "data.name": "digits", "train.epochs": 1},
        out_dir=base / "study",
        log=lambda s: None,
    )
    made["trial"] = next(p for p in (base / "study" / "trials").iterdir() if (p / "model").is_dir())
    folds = cnnlab.cv(data="digits", folds=2, epochs=1, out=base / "cv", overrides=FAST, **quiet)
    made["cv-fold"] = folds.runs[1]
    from cnnlab.scratch import ScratchConfig, fit

    cfg = ScratchConfig(data="digits", model="allconv", epochs=1, output_root=str(out), progress=False)
    made["numpy"] = fit(cfg, log=lambda s: None).run_dir
    return made


def _run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _image_of(run: Path) -> Path:
    """A test image of the run, written as a PNG, to predict."""
    r = open_run(run)
    x = r.examples("test").images([0])[0]  # (H, W, C) in [0, 1]
    arr = (x * 255).round().astype(np.uint8)
    path = run.parent / f"{run.name}-probe.png"
    Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(path)
    return path


# (command, refused for NumPy runs?) — NumPy runs have no torch module for hooks, autograd or exporters
COMMANDS = {
    "evaluate": (lambda r: ["evaluate", r], False),
    "evaluate-json": (lambda r: ["evaluate", r, "--json"], False),
    "evaluate-val-tta": (lambda r: ["evaluate", r, "--split", "val", "--tta", "flip-translate1"], False),
    "interpret": (lambda r: ["interpret", r, "--top", 3], False),
    "report": (lambda r: ["report", r], False),
    "visualize-predictions": (lambda r: ["visualize", r, "predictions", "--n", 4], False),
    "visualize-gradcam": (lambda r: ["visualize", r, "gradcam"], True),
    "predict": (lambda r: ["predict", r, _image_of(r), "--format", "json"], False),
    "export": (lambda r: ["export", r, "--format", "onnx", "--output", r.parent / f"{r.name}.onnx"], True),
    "compress": (lambda r: ["compress", r, "--method", "prune", "--finetune-epochs", 0, "--runs", 2], True),
    "runs": (lambda r: ["runs", "--runs-root", r.parent], False),
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", KINDS)
def test_every_command_on_every_run_kind(runs, kind, command, capsys):
    make, refused_for_numpy = COMMANDS[command]
    code, out, err = _run_cli(make(runs[kind]), capsys)
    assert "Traceback" not in out + err
    if kind == "numpy" and refused_for_numpy:
        assert code == 1 and "NumPy engine" in err, err
    else:
        assert code == 0, err


def test_runs_compare_across_kinds(runs, capsys, tmp_path):
    code, out, err = _run_cli(
        ["runs", "compare", runs["dataset"], runs["numpy"], runs["folder-skip"], "--output", tmp_path / "c.png"], capsys
    )
    assert code == 0, err
    assert (tmp_path / "c.png").is_file()


def test_serve_app_loads_every_run_kind(runs):
    from fastapi.testclient import TestClient

    from cnnlab.serve.app import create_app

    for kind in KINDS:
        png = _image_of(runs[kind]).read_bytes()
        with TestClient(create_app(runs[kind]), raise_server_exceptions=False) as client:
            deadline = time.monotonic() + 120  # the model loads and warms up in the background
            while "loading" in (ready := client.get("/ready")).text and time.monotonic() < deadline:
                time.sleep(0.1)
            assert ready.status_code == 200, (kind, ready.text)
            r = client.post("/predict", files={"file": ("x.png", png, "image/png")})
            assert r.status_code == 200, r.text
            assert r.json()["label"] in open_run(runs[kind]).classes


def test_open_run_knows_every_kind(runs):
    kinds = {k: open_run(p) for k, p in runs.items()}
    assert kinds["numpy"].engine == "numpy" and kinds["dataset"].engine == "torch"
    assert "folder" in kinds["folder-skip"].kind and "fine-tuned" in kinds["finetuned"].kind
    assert (
        "csv" in kinds["csv"].kind
        and kinds["csv"].is_folder
        and kinds["csv"].data_folder() == runs["csv"].parent.parent
    )
    assert "trial" in kinds["trial"].kind and "fold 2/2" in kinds["cv-fold"].kind
    for run in kinds.values():  # the saved test predictions are the test split of split.csv, in order
        preds, examples = run.test_predictions()
        assert preds.ids == examples.ids and len(preds.ids) == len(run.examples("test"))
        assert np.array_equal(preds.targets, examples.labels)


def test_saved_predictions_match_the_model(runs):
    """predictions.csv is what the model predicts now on the exact test images (skip-mode folder run)."""
    run = open_run(runs["folder-skip"])
    saved = run.predictions()
    assert saved is not None
    examples = run.examples("test")
    fresh = run.logits(examples)
    assert np.array_equal(saved.preds, fresh.argmax(1))
    probs = np.exp(fresh - fresh.max(1, keepdims=True))
    assert np.allclose(saved.probs, probs / probs.sum(1, keepdims=True), atol=1e-6)


def test_skip_mode_folder_run_keeps_skipped_files_out_and_duplicates_together(runs):
    run = open_run(runs["folder-skip"])
    rows = run.split_rows()
    sources = {src: split for split, src, _ in rows}
    assert "two/IMG_9999.jpg" not in sources  # the truncated file stays skipped
    assert any("IMG_9999.jpg" in p for p, _ in run.data_info["skipped"])
    assert sources["zero/IMG_0006.jpg"] == sources["zero/IMG_0006 copy.jpg"]  # exact copy: same side
    assert sources["one/IMG_0003.jpg"] == sources["one/IMG_0003-small.jpg"]  # near-duplicate: same side
    groups = run.data_info["duplicate_groups"]
    assert any({"zero/IMG_0006 copy.jpg", "zero/IMG_0006.jpg"} <= set(g) for g in groups)
    counts = run.data_info["class_counts"]["train"]  # the training split's counts, as trained
    assert sum(counts) == sum(1 for s in sources.values() if s == "train")
    assert (runs["folder-skip"] / "report.html").is_file()  # written after training, despite the bad file


def test_export_parity_of_a_folder_run_uses_its_test_images(runs, capsys, tmp_path):
    code, out, err = _run_cli(["export", runs["folder-skip"], "--output", tmp_path / "m.onnx"], capsys)
    assert code == 0, err
    assert "test images of folder photos (the run's split.csv)" in out


def test_runs_lists_the_numpy_run(runs, capsys):
    code, out, err = _run_cli(["runs", "--runs-root", runs["numpy"].parent], capsys)
    assert code == 0, err
    assert runs["numpy"].name in out and "(numpy)" in out


def test_predictions_csv_format(runs):
    """The documented columns: id, true, pred, confidence, p_0..p_{K-1}; probabilities sum to 1."""
    text = (runs["dataset"] / "predictions.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))
    classes = json.loads((runs["dataset"] / "model" / "model.json").read_text())["classes"]
    assert rows[0] == ["id", "true", "pred", "confidence", *(f"p_{k}" for k in range(len(classes)))]
    for row in rows[1:6]:
        p = np.array([float(v) for v in row[4:]])
        assert abs(p.sum() - 1) < 1e-6 and row[2] == classes[int(p.argmax())] and float(row[3]) == p.max()


def test_documented_split_files_match_a_folder_run(runs):
    """docs/own-images.md names the columns of split.csv and split_manifest.csv: the files have them."""
    doc = (Path(__file__).parents[2] / "docs" / "own-images.md").read_text()
    for name in ("split.csv", "split_manifest.csv"):
        header = (runs["folder-skip"] / name).read_text().splitlines()[0]
        assert f"`{name}` has the columns `{header}`" in doc.replace("\n  ", " "), (name, header)


def test_a_tampered_split_csv_cannot_read_files_outside_the_data_folder(runs, tmp_path, capsys):
    run = tmp_path / "tampered"
    shutil.copytree(runs["folder-skip"], run)
    rows = (run / "split.csv").read_text().splitlines()
    rows.append("test,../../../etc/hostname,0")
    (run / "split.csv").write_text("\n".join(rows) + "\n")
    (run / "predictions.csv").unlink()
    code, out, err = _run_cli(["evaluate", run], capsys)
    assert code == 1 and "outside the data folder" in err and "Traceback" not in err
