"""``demo:mnist``: the trained model shipped in the package works in every command at minute one, offline,
and no command writes into the package (what belongs beside the run goes to ``runs/demo-mnist/``).

It is not in test_run_matrix.py's kinds: that matrix writes probes and exports beside each run folder,
which for a built-in run is the package itself; here the same commands run from a scratch folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError
from cnnlab.runs.builtin import builtin_root, output_dir, resolve_run_path
from cnnlab.runs.run import find_run, open_run

REPO = Path(__file__).resolve().parents[2]
SHIPPED = resolve_run_path("demo:mnist")


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def _digit_png(folder: Path, index: int = 0) -> tuple[Path, str]:
    """A bundled test image of the demo run as a PNG, and its true class."""
    run = open_run("demo:mnist")
    examples = run.examples("test")
    x = (examples.images([index])[0, :, :, 0] * 255).round().astype(np.uint8)  # (28, 28)
    path = folder / f"digit{index}.png"
    Image.fromarray(x).save(path)
    return path, run.classes[int(examples.labels[index])]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def untouched_package():
    """Fails the test if anything under cnnlab/demo/ was added, removed or changed."""
    before = _snapshot(builtin_root())
    yield
    assert _snapshot(builtin_root()) == before


# ---- the shipped folder -----------------------------------------------------------------------------
def test_demo_name_is_the_run_shipped_in_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # output_dir creates runs/demo-mnist here
    assert builtin_root() / "mnist" == SHIPPED and SHIPPED.is_relative_to(REPO / "src" / "cnnlab")
    run = open_run("demo:mnist")
    assert run.path == SHIPPED and run.model_name == "fast_cnn" and run.dataset == "mnist-sample"
    assert find_run("demo:mnist").path == SHIPPED
    assert output_dir(SHIPPED) == Path("runs") / "demo-mnist"
    with pytest.raises(CnnlabError, match="Did you mean 'demo:mnist'"):
        resolve_run_path("demo:mnst")
    assert resolve_run_path("runs/x") == Path("runs/x")  # anything else is a path, unchanged


def test_unknown_built_in_name_is_one_clear_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "demo:cifar"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "unknown built-in run 'demo:cifar'" in err and "demo:mnist" in err


def test_model_record_is_consistent_and_accurate():
    """model.json's demo record, metrics.json, predictions.csv and split.csv tell one story."""
    run = open_run("demo:mnist")
    record = run.meta["demo"]
    full, bundled = record["test_full_mnist"], record["test_bundled"]
    assert full["images"] == 10_000 and full["accuracy"] >= 0.99 and full["accuracy"] == run.meta["metrics"]["accuracy"]
    assert bundled["images"] == 1000 and bundled["dataset"] == "mnist-sample" and bundled["accuracy"] >= 0.98
    metrics = run.metrics()
    assert metrics["accuracy"] == bundled["accuracy"] and metrics["num_samples"] == 1000
    assert metrics["full_mnist_test"]["accuracy"] == full["accuracy"] and "1,000" in metrics["test_data"]
    preds = run.predictions()
    examples = run.examples("test")
    assert preds.ids == examples.ids == [str(i) for i in range(1000)]
    assert np.mean(preds.preds == preds.targets) == bundled["accuracy"]
    assert run.config["data"]["name"] == "mnist-sample" and run.config["data"]["root"] is None  # offline
    trained = run.meta["config"]["data"]  # the recipe as trained: full MNIST, from a relative data root
    assert trained["name"] == "mnist" and not Path(trained["root"]).is_absolute()
    assert {k: v for k, v in run.meta["config"].items() if k != "data"} == {
        k: v for k, v in run.config.items() if k != "data"
    }
    assert not any(Path(a).is_absolute() for a in run.env["argv"])  # no machine paths in the package
    assert record["command"].startswith("python scripts/train_demo_model.py")
    for doc in ("docs/learn/README.md", "README.md", "docs/learn/10-training.md"):  # the docs quote this record
        text = " ".join((REPO / doc).read_text().split())
        assert f"{100 * full['accuracy']:.2f} %" in text and f"{100 * bundled['accuracy']:.1f} %" in text, doc
    assert record["built"] in (REPO / "docs" / "learn" / "README.md").read_text()
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size < 500_000  # a few hundred kB in the wheel
    assert not any(p.suffix == ".pt" for p in SHIPPED.rglob("*"))  # no checkpoints, no pickle


def test_shipped_predictions_are_what_the_model_predicts_now():
    run = open_run("demo:mnist")
    examples = run.examples("test")
    logits = run.logits(examples)  # (1000, 10)
    saved = run.predictions()
    assert np.array_equal(saved.preds, logits.argmax(1))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    assert np.allclose(saved.probs, probs / probs.sum(1, keepdims=True), atol=1e-6)


def test_bundled_test_images_were_never_trained_on():
    """They are rows of MNIST's official test set (mnist_sample.json records the selection)."""
    meta = json.loads((REPO / "src" / "cnnlab" / "data" / "sample" / "mnist_sample.json").read_text())
    assert "test_indices" in meta["indices"] and "t10k-images" in meta["indices"]


# ---- every command, from a scratch folder, writing nothing into the package ---------------------------
def test_every_command_works_on_demo_mnist_and_writes_beside_not_inside(
    tmp_path, monkeypatch, capsys, untouched_package
):
    monkeypatch.chdir(tmp_path)
    png, label = _digit_png(tmp_path)
    out = tmp_path / "runs" / "demo-mnist"
    accuracy = open_run("demo:mnist").metrics()["accuracy"]

    assert main(["evaluate", "demo:mnist", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == accuracy
    assert main(["evaluate", "demo:mnist"]) == 0
    assert f"accuracy  {accuracy:.4f}" in capsys.readouterr().out
    assert main(["interpret", "demo:mnist", "--top", "5"]) == 0
    text = capsys.readouterr().out
    assert f"{round(accuracy * 1000)} of 1000 test images right" in text and (out / "misclassified.csv").is_file()
    for kind in ("filters", "feature-maps", "gradcam", "saliency", "predictions"):
        assert main(["visualize", "demo:mnist", kind, "--n", "8"]) == 0, kind
    assert "runs/demo-mnist/plots/gradcam_0.png" in capsys.readouterr().out
    assert main(["report", "demo:mnist"]) == 0
    assert capsys.readouterr().out.strip() == "wrote runs/demo-mnist/report.html"
    assert "fast_cnn" in (out / "report.html").read_text()
    assert main(["predict", "demo:mnist", str(png), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"] == label
    assert main(["summary", "demo:mnist"]) == 0
    assert "29,178" in capsys.readouterr().out  # trainable parameters of fast_cnn 16-32-64
    pytest.importorskip("onnx")
    assert main(["compress", "demo:mnist", "--method", "prune", "--finetune-epochs", "0", "--runs", "2"]) == 0
    assert "wrote runs/demo-mnist/pruned-50" in capsys.readouterr().out  # the pruned model, beside the run
    assert (out / "pruned-50" / "model.json").is_file()
    assert main(["export", "demo:mnist", "--format", "onnx"]) == 0
    assert "top-1 agreement 100.00%" in capsys.readouterr().out and (out / "model.onnx").is_file()


def test_python_api_takes_the_name(tmp_path, monkeypatch, untouched_package):
    import cnnlab

    monkeypatch.chdir(tmp_path)
    m = cnnlab.evaluate("demo:mnist", device="cpu")
    assert m["accuracy"] == open_run("demo:mnist").metrics()["accuracy"]
    assert (tmp_path / "runs" / "demo-mnist" / "metrics.json").is_file()
    from cnnlab.serve.predictor import Predictor

    png, label = _digit_png(tmp_path)
    assert Predictor("demo:mnist").predict(png)[0]["label"] == label


def test_runs_compare_takes_the_name(tmp_path, capsys, untouched_package):
    shutil.copytree(open_run("demo:mnist").path, tmp_path / "copy")
    out = tmp_path / "c.png"
    assert main(["runs", "compare", "demo:mnist", str(tmp_path / "copy"), "--output", str(out)]) == 0
    assert out.is_file() and f"curves: {out}" in capsys.readouterr().out


def _wait_json(url: str, proc: subprocess.Popen, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.2)
    raise AssertionError(proc.stderr.read().decode() if proc.poll() is not None else f"{url}: no answer")


@pytest.mark.parametrize("command", ["serve", "explain"])
def test_serve_and_explain_start_on_demo_mnist(command, tmp_path, untouched_package):
    """The real command in its own process: ready, one prediction (serve) or the layers (explain), stopped."""
    pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "cnnlab", command, "demo:mnist", "--port", str(port), "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        if command == "serve":
            assert _wait_json(f"{base}/v2/health/ready", proc) == {"ready": True}
            png, label = _digit_png(tmp_path, 3)
            r = httpx.post(f"{base}/predict", files={"file": ("d.png", png.read_bytes(), "image/png")}, timeout=30)
            assert r.status_code == 200 and r.json()["label"] == label, r.text
        else:
            model = _wait_json(f"{base}/api/model", proc)
            assert model["architecture"] == "fast_cnn"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.mark.data
def test_full_mnist_accuracy_in_the_record_is_what_evaluate_measures(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["evaluate", "demo:mnist", "--data", "mnist", "--data-root", str(shared_data), "--json", "--device", "cpu"]
    assert main(argv) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["num_samples"] == 10_000
    assert measured["accuracy"] == open_run("demo:mnist").meta["demo"]["test_full_mnist"]["accuracy"]


# ---- the learning pages' demo:mnist commands ------------------------------------------------------------
def _transcripts():
    """(page, command, shown lines) of every ``$ cnnlab ... demo:mnist`` transcript in docs/learn."""
    for page in sorted((REPO / "docs" / "learn").glob("*.md")):
        for block in page.read_text().split("```console\n")[1:]:
            for chunk in block.split("```")[0].split("$ cnnlab ")[1:]:
                command, _, shown = chunk.partition("\n")
                if "demo:mnist" in command.split():
                    yield page.name, command, [line for line in shown.splitlines() if line.strip()]


def test_learning_pages_demo_transcripts_print_what_they_show(tmp_path, monkeypatch, capsys, untouched_package):
    """Each transcript runs from a scratch folder, and every line the page shows is in its output."""
    monkeypatch.chdir(tmp_path)
    ran = []
    for page, command, shown in _transcripts():
        assert main(command.split()) == 0, f"{page}: cnnlab {command}"
        out = capsys.readouterr().out
        missing = [line for line in shown if line not in out]
        assert not missing, f"{page}: cnnlab {command} does not print {missing}\n{out}"
        ran.append(command.split()[0])
    assert {"evaluate", "summary", "visualize", "interpret"} <= set(ran), ran


def test_learning_pages_inline_demo_commands_parse():
    """`cnnlab ... demo:mnist ...` written inline in docs/learn and README.md: real commands and flags (each
    command is run by a test in this file)."""
    import re

    from cnnlab.cli.main import build_parser

    parser = build_parser()
    found = []
    for page in sorted((REPO / "docs" / "learn").glob("*.md")):
        for command in re.findall(r"`cnnlab ([^`|]*demo:mnist[^`|]*)`", page.read_text()):
            args = parser.parse_args(command.split())
            given = (
                vars(args)["cfg:model.pretrained"]
                if args.command == "train"
                else (getattr(args, "run", None) or args.model)
            )
            assert Path(given) == SHIPPED or given == "demo:mnist", command  # train resolves it when it starts
            found.append(command)
    for line in (REPO / "README.md").read_text().splitlines():  # the README's command list
        if line.startswith("cnnlab ") and "demo:mnist" in line:
            command = line.split("#")[0].split(maxsplit=1)[1]
            args = parser.parse_args(command.split())
            assert Path(getattr(args, "run", None) or args.model) == SHIPPED, command
            found.append(command)
    assert len(found) >= 7, found


def test_training_can_start_from_demo_mnist(tmp_path, monkeypatch, capsys, untouched_package):
    """Page 18's command (fewer images and one thread, for speed): the fine-tune recipe on top of demo:mnist."""
    monkeypatch.chdir(tmp_path)
    command = "train --data digits --model fast_cnn --pretrained demo:mnist --epochs 2"
    fast = "--data.train_fraction 0.25 --train.threads 1 --output.plots false"
    assert main([*command.split(), *fast.split()]) == 0
    out = capsys.readouterr().out
    assert "images 28x28" in out and "adamw's rate for a new head" in out and "fine-tune recipe" in out
    accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.7, out  # 10 classes; the MNIST features carry over (from scratch: about 0.3)
