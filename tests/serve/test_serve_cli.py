"""``cnnlab serve`` and ``cnnlab explain`` as commands: predictions only unless the owner asks for the
explainer (and, separately, for the run's test images), an explainer offered only where it can work, and a
port in use as one error line before any URL is printed."""

from __future__ import annotations

import socket

import pytest
import torch
from serve_helpers import digit_like, encode

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import cnnlab.cli.explain  # noqa: E402
import cnnlab.cli.serve  # noqa: E402
from cnnlab.cli.main import main  # noqa: E402


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A model folder of the bundled digits data set: its test images can be found without a download."""
    from cnnlab.models import create_model
    from cnnlab.runs.model_file import save_model_file

    torch.manual_seed(0)
    model = create_model("seed_cnn", num_classes=10, in_channels=1, input_size=28).eval()
    meta = {"architecture": "seed_cnn", "kwargs": {}, "classes": [str(i) for i in range(10)]}
    meta |= {"input_shape": [1, 28, 28], "mean": [0.5], "std": [0.25], "dataset": "digits"}
    return save_model_file(tmp_path_factory.mktemp("digits_model") / "model", model, meta)


def _started(monkeypatch, command, argv: list[str]) -> dict:
    """Run ``cnnlab ARGV`` up to the point where it would serve; return the app and the lines it would print."""
    seen: dict = {}

    def fake_start(app, args, settings, lines):
        seen.update(app=app, lines=lines, settings=settings)
        return 0

    monkeypatch.setattr(command, "start", fake_start)
    assert main(argv) == 0
    return seen


def test_serve_hands_out_predictions_only_by_default(monkeypatch, digits_model):
    seen = _started(monkeypatch, cnnlab.cli.serve, ["serve", str(digits_model)])
    assert not any("explain" in line for line in seen["lines"])
    with TestClient(seen["app"]) as c:
        assert c.get("/explain/").status_code == 404 and c.get("/explain/api/samples").status_code == 404
        assert c.post("/predict", files={"file": ("d.png", encode(digit_like()))}).status_code == 200


def test_serve_explain_shows_uploads_and_test_images_only_when_asked(monkeypatch, digits_model):
    seen = _started(monkeypatch, cnnlab.cli.serve, ["serve", str(digits_model), "--explain"])
    assert any("explain/" in line and "uploaded images only" in line for line in seen["lines"])
    with TestClient(seen["app"]) as c:
        s = c.get("/explain/api/samples").json()
        assert s["samples"] == [] and "uploaded images only" in s["note"]
        assert c.post("/explain/api/analyse/sample?index=0").status_code == 404
        a = c.post("/explain/api/analyse", files={"file": ("d.png", encode(digit_like()))})
        assert a.status_code == 200 and a.headers["x-request-id"]
    seen = _started(monkeypatch, cnnlab.cli.serve, ["serve", str(digits_model), "--explain-test-images"])
    with TestClient(seen["app"]) as c:
        assert len(c.get("/explain/api/samples").json()["samples"]) == 24
        assert c.post("/explain/api/analyse/sample?index=0").status_code == 200


def test_serve_explain_refuses_a_model_it_cannot_explain(onnx_model, capsys, monkeypatch):
    seen = _started(monkeypatch, cnnlab.cli.serve, ["serve", str(onnx_model)])
    assert not any("explain" in line for line in seen["lines"])  # nothing advertised that cannot work
    capsys.readouterr()
    assert main(["serve", str(onnx_model), "--explain"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error: --explain:") and "exported file" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["serve", "explain"])
def test_a_port_in_use_is_one_error_line_before_any_url(command, digits_model, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main([command, str(digits_model), "--port", str(port)]) == 1
    out, err = capsys.readouterr()
    assert (
        err == f"cnnlab: error: port {port} on 127.0.0.1 is already in use; stop what listens there or "
        "choose another with --port\n"
    )
    assert "http://" not in out


def test_explain_takes_the_servers_limits(monkeypatch, digits_model):
    argv = ["explain", str(digits_model), "--read-timeout", "3", "--min-body-rate", "10", "--max-total-pixels", "4e7"]
    with pytest.raises(SystemExit):  # an int flag refuses "4e7" as serve's does
        main(argv)
    argv[-1] = "40000000"
    seen = _started(monkeypatch, cnnlab.cli.explain, argv)
    s = seen["settings"]
    assert (s.read_timeout_s, s.min_body_rate, s.max_total_pixels) == (3.0, 10.0, 40_000_000)
    assert seen["app"].state.explain.admission.queue == 16  # explain's own default queue


@pytest.mark.parametrize("command", ["serve", "explain"])
@pytest.mark.parametrize(
    "flag,value,message",
    [
        ("--threads", "0", "--threads must be at least 1"),
        ("--read-timeout", "0", "--read-timeout must be > 0"),
        ("--max-total-pixels", "10", "--max-total-pixels must be at least --max-pixels"),
        ("--max-queue", "-1", "--max-queue must be >= 0"),
    ],
)
def test_both_commands_refuse_the_same_bad_limits_before_loading(command, flag, value, message, tmp_path, capsys):
    assert main([command, str(tmp_path / "no-model-needed"), flag, value]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error:") and message in err and "Traceback" not in err
