"""Untrusted and tampered model files: TorchScript needs an opt-in, and every damaged model input ends
in one ``cnnlab: error:`` line naming the file (never a traceback), for ``predict`` and ``serve``."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from serve_helpers import digit_like

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError
from cnnlab.serve.predictor import Predictor

META = {"classes": [str(i) for i in range(10)], "input_shape": [1, 28, 28], "mean": [0.1], "std": [0.3]}


class _WritesAFile(torch.nn.Module):
    """A scripted forward that creates a file through torch.from_file(shared=True): code, not data."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x):
        t = torch.from_file(self.path, True, 8, dtype=torch.uint8)
        return torch.zeros(x.shape[0], 10) + t.float().sum()


@pytest.fixture
def evil_torchscript(tmp_path):
    marker = tmp_path / "written_by_the_model.bin"
    path = tmp_path / "model.torchscript.pt"
    torch.jit.save(
        torch.jit.script(_WritesAFile(str(marker))), str(path), _extra_files={"cnnlab.json": json.dumps(META)}
    )
    image = tmp_path / "digit.png"
    digit_like().save(image)
    return path, marker, image


def test_torchscript_is_refused_without_the_opt_in(evil_torchscript, capsys):
    path, marker, image = evil_torchscript
    assert main(["predict", str(path), str(image)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error:") and str(path) in err
    assert "ONNX" in err and "--trust-torchscript" in err and "Traceback" not in err
    assert not marker.exists()  # nothing of the file ran
    with pytest.raises(CnnlabError, match="TorchScript"):
        Predictor(path)
    # the same file with the opt-in runs (and so writes): the refusal above is what protected us
    assert main(["predict", str(path), str(image), "--trust-torchscript"]) == 0
    assert marker.exists()


def test_serve_refuses_torchscript_before_starting(evil_torchscript, capsys):
    pytest.importorskip("uvicorn")
    path, marker, _ = evil_torchscript
    assert main(["serve", str(path), "--port", "1"]) == 1
    assert "--trust-torchscript" in capsys.readouterr().err
    assert not marker.exists()


def _copy(model_dir, tmp_path, name="tampered"):
    dst = tmp_path / name
    shutil.copytree(model_dir, dst)
    return dst


def _meta(folder) -> dict:
    return json.loads((folder / "model.json").read_text())


def _set_meta(folder, **changes) -> None:
    meta = _meta(folder)
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    (folder / "model.json").write_text(json.dumps(meta))


TAMPER = {
    "empty weights": lambda f: (f / "weights.safetensors").write_bytes(b""),
    "truncated weights": lambda f: (f / "weights.safetensors").write_bytes(
        (f / "weights.safetensors").read_bytes()[:999]
    ),
    "cut tail of weights": lambda f: (f / "weights.safetensors").write_bytes(
        (f / "weights.safetensors").read_bytes()[:-100]
    ),
    "garbage weights": lambda f: (f / "weights.safetensors").write_bytes(b"\x00\x01garbage" * 100),
    "huge header length": lambda f: (f / "weights.safetensors").write_bytes(b"\xff" * 8 + b"{}"),
    "json list": lambda f: (f / "model.json").write_text("[1, 2, 3]"),
    "json string": lambda f: (f / "model.json").write_text('"model"'),
    "json broken": lambda f: (f / "model.json").write_text("{not json"),
    "missing classes": lambda f: _set_meta(f, classes=None),
    "missing architecture": lambda f: _set_meta(f, architecture=None),
    "unknown architecture": lambda f: _set_meta(f, architecture="no_such_net"),
    "bad kwargs": lambda f: _set_meta(f, kwargs={"no_such_argument": 3}),
    "kwargs not an object": lambda f: _set_meta(f, kwargs=[1]),
    "more classes than outputs": lambda f: _set_meta(f, classes=[f"c{i}" for i in range(12)]),
    "wrong input shape": lambda f: _set_meta(f, input_shape=[3, 28, 28]),
    "input shape strings": lambda f: _set_meta(f, input_shape=["1", "28", "28"]),
    "mean not numbers": lambda f: _set_meta(f, mean=["x"]),
    "classes not a list": lambda f: _set_meta(f, classes="0123456789"),
    "resize size a string": lambda f: _set_meta(f, resize_size="256"),
    "resize size enormous": lambda f: _set_meta(f, resize_size=10**9),
    "resize size below the input": lambda f: _set_meta(f, resize_size=4),
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_tampered_model_folders_end_in_one_error_line(model_dir, tmp_path, case, capsys):
    folder = _copy(model_dir, tmp_path)
    TAMPER[case](folder)
    image = tmp_path / "digit.png"
    digit_like().save(image)
    assert main(["predict", str(folder), str(image)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnnlab: error:") and "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert str(folder) in err or "model.json" in err or "weights" in err, err


def test_nan_weights_are_refused_at_warm_up(model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy(model_dir, tmp_path)
    state = load_file(str(folder / "weights.safetensors"))
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(folder / "weights.safetensors"))
    with pytest.raises(CnnlabError, match="NaN or infinite"):
        Predictor(folder)


def test_damaged_and_external_data_onnx_files_are_refused(onnx_model, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    good = onnx_model
    image = tmp_path / "digit.png"
    digit_like().save(image)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage that is not protobuf" * 10)
    # weights moved to an external file that names a path outside the model's folder
    ext = tmp_path / "ext" / "external.onnx"
    ext.parent.mkdir()
    model = onnx.load(str(good))
    onnx.save_model(model, str(ext), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin")
    model = onnx.load(str(ext), load_external_data=False)
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = "../../../../etc/hostname"
    onnx.save_model(model, str(ext))
    for bad, words in ((cut, "ONNX"), (junk, "ONNX"), (ext, "external data")):
        assert main(["predict", str(bad), str(image)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("cnnlab: error:") and len(err.splitlines()) == 1, err
        assert str(bad) in err and words in err, err


def test_serve_exits_with_an_error_for_a_broken_model(model_dir, tmp_path, capsys):
    pytest.importorskip("uvicorn")
    folder = _copy(model_dir, tmp_path)
    TAMPER["truncated weights"](folder)
    assert main(["serve", str(folder), "--port", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnnlab: error:") and "weights.safetensors" in err and len(err.splitlines()) == 1


def test_cnnlab_serve_runs_an_onnx_file(onnx_model, tmp_path):
    """``cnnlab serve FILE.onnx`` in its own process: ready (KServe v2 route), predicts, and stops on SIGTERM."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    pytest.importorskip("uvicorn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "cnnlab", "serve", str(onnx_model), "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline, ready = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5) as r:
                    ready = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.2)
        assert ready == {"ready": True}, proc.stderr.read() if proc.poll() is not None else "timed out"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/model", timeout=5) as r:
            assert json.loads(r.read())["classes"] == [f"class_{i}" for i in range(10)]
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_model_that_fails_in_the_background_is_logged(model_dir, tmp_path, caplog):
    """create_app(path) loads in the background: a failure keeps /ready at 503 and says why in the log."""
    pytest.importorskip("fastapi")
    import logging
    import time

    from fastapi.testclient import TestClient

    from cnnlab.serve.app import create_app

    folder = _copy(model_dir, tmp_path)
    TAMPER["truncated weights"](folder)
    logged = caplog.at_level(logging.ERROR, logger="uvicorn.error")
    with logged, TestClient(create_app(folder), raise_server_exceptions=False) as c:
        deadline = time.monotonic() + 30
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.05)
        r = c.get("/v2/health/ready")
    assert r.status_code == 503 and r.json()["error"]["message"] == "model failed to load"
    assert str(folder) not in r.text  # no paths in responses...
    assert any("weights.safetensors is damaged" in rec.getMessage() for rec in caplog.records)  # ...but in the log
