"""The explainer's JSON endpoints: payloads, the server's limits, errors without tracebacks, and the page
mounted inside ``cnnlab serve``."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from explain_helpers import digit_like

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from cnnlab.explain.app import create_explain_app, explain_page, mount_explain  # noqa: E402
from cnnlab.serve.app import ServeSettings, create_app  # noqa: E402


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(explain_model):
    return TestClient(create_explain_app(explain_model, ServeSettings(max_body_bytes=200_000, max_pixels=250_000)))


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text and "/tmp" not in text


def test_analyse_gives_every_layer_the_steps_and_the_softmax(client):
    r = client.post("/api/analyse?topk=3", files={"file": ("d.png", _png(digit_like(40, 1)))})
    assert r.status_code == 200, r.text
    a = r.json()
    assert [s["name"] for s in a["steps"]] == ["decoded", "resized", "normalised"]
    assert "40x40" in a["steps"][0]["text"] and a["steps"][2]["mean"] == [0.13]
    layers = a["layers"]
    assert layers[0]["name"] == "input" and layers[0]["shape"] == [1, 28, 28]
    assert len(layers) == 26 and layers[1]["type"] == "Conv2d" and layers[1]["params"] == 32 * 9 + 32
    assert layers[1]["window"]["kernel"] == [3, 3] and layers[1]["source"] == 0 and layers[1]["in_shape"] == [1, 28, 28]
    assert layers[2]["window"] is None and layers[2]["source"] == 1  # BatchNorm reads the conv's output
    for layer in layers:
        raw = base64.b64decode(layer["maps"])
        assert len(raw) == int(np.prod(layer["shape"])) and layer["min"] <= layer["max"]
    assert sum(a["softmax"]["probs"]) == pytest.approx(1.0) and len(a["top"]) == 3
    u = client.get(f"/api/unit?id={a['id']}&layer=1&c=3&y=0&x=0").json()
    assert u["kind"] == "conv" and u["box"] == [0, 0, 1, 1] and u["computed"] == pytest.approx(u["value"], abs=1e-5)
    u = client.get(f"/api/unit?id={a['id']}&layer=25&c=4").json()  # the last linear layer: a logit
    assert u["kind"] == "linear" and u["value"] == pytest.approx(a["softmax"]["logits"][4], abs=1e-5)
    cam = client.get(f"/api/attribution?id={a['id']}&method=saliency&target=2").json()
    assert cam["target"] == 2 and cam["size"] == [28, 28] and len(base64.b64decode(cam["map"])) == 28 * 28


def test_test_images_come_with_their_true_labels(client):
    s = client.get("/api/samples").json()
    assert len(s["samples"]) == 24 and s["samples"][0]["png"].startswith("data:image/png;base64,")
    assert [row["label"] for row in s["samples"][:10]] == list(range(10))  # every class, not the first 24 images
    a = client.post("/api/analyse/sample?index=2").json()
    assert a["label"]["index"] == s["samples"][2]["label"] and a["label"]["name"].startswith("digit_")
    r = client.post("/api/analyse/sample?index=999")
    assert r.status_code == 422 and "does not exist" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "call,status,code",
    [
        (
            lambda c: c.post("/api/analyse", files={"file": ("a.jpg", b"<!doctype html><html>")}),
            415,
            "unsupported_type",
        ),
        (lambda c: c.post("/api/analyse", files={"file": ("a.png", _png(digit_like(600)))}), 422, "too_many_pixels"),
        (lambda c: c.post("/api/analyse", files={"file": ("a.png", b"\x89PNG\r\n\x1a\n" + b"0" * 300_000)}), 413, None),
        (lambda c: c.post("/api/analyse", files={"file": ("a.png", b"")}), 422, "empty"),
        (lambda c: c.get("/api/unit?id=abc123&layer=1&c=0"), 404, "expired"),
        (lambda c: c.get("/api/unit?id=zz&layer=1&c=0"), 422, "invalid_request"),
        (lambda c: c.get("/api/attribution?id=abc&method=x"), 404, "expired"),
    ],
)
def test_bad_requests_get_json_errors_without_tracebacks(client, call, status, code):
    r = call(client)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == status and (code is None or err["code"] == code) and err["request_id"]
    _no_traceback(r.text)


def test_units_outside_a_layer_and_a_busy_server(client, explain_model):
    a = client.post("/api/analyse", files={"file": ("d.png", _png(digit_like(28)))}).json()
    r = client.get(f"/api/unit?id={a['id']}&layer=1&c=32&y=0&x=0")
    assert r.status_code == 422 and "outside layer features.0.0" in r.json()["error"]["message"]
    r = client.get(f"/api/unit?id={a['id']}&layer=99&c=0")
    assert r.status_code == 422 and "layers are 0..25" in r.json()["error"]["message"]
    app = create_explain_app(explain_model, ServeSettings(max_concurrency=1, max_queue=0))
    app.state.explain.admission.waiting = 1  # one request already being served
    r = TestClient(app).get("/api/model")
    assert r.status_code == 503 and r.json()["error"]["code"] == "busy"


def test_the_page_is_self_contained():
    html = explain_page()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # no CDN, no external asset
    assert "fetch(path" in html and 'fetch("/' not in html  # relative API paths: works at / and /explain/


def test_mounted_inside_the_prediction_server(explain_model):
    app = create_app(explain_model, ServeSettings())
    mount_explain(app, explain_model, ServeSettings())  # as cnnlab serve does
    with TestClient(app) as c:
        page = c.get("/explain/")
        assert page.status_code == 200 and "cnnlab explain" in page.text and page.headers["x-request-id"]
        assert c.get("/explain/api/model").json()["architecture"] == "seed_cnn"
        a = c.post("/explain/api/analyse", files={"file": ("d.png", _png(digit_like(28)))})
        assert a.status_code == 200 and len(a.json()["layers"]) == 26
        assert c.get("/model").status_code == 200  # the server's own routes are untouched


ZOO = [("lenet5", 1, 28), ("fast_cnn", 3, 32), ("mnist_cnn", 1, 28)]
ZOO += [("vgg11_bn_cifar", 3, 32), ("resnet18_cifar", 3, 32)]


@pytest.mark.parametrize("arch,c,s", ZOO)
def test_zoo_models_are_explained_end_to_end(arch, c, s, tmp_path):
    import torch
    from explain_helpers import random_bn_stats

    from cnnlab.models import create_model
    from cnnlab.runs.model_file import save_model_file

    torch.manual_seed(0)
    model = random_bn_stats(create_model(arch, num_classes=10, in_channels=c, input_size=s)).eval()
    meta = {"architecture": arch, "kwargs": {}, "classes": [str(i) for i in range(10)], "input_shape": [c, s, s]}
    folder = save_model_file(tmp_path / "model", model, {**meta, "mean": [0.5] * c, "std": [0.25] * c})
    client = TestClient(create_explain_app(folder))
    img = digit_like(s).convert("RGB" if c == 3 else "L")
    a = client.post("/api/analyse", files={"file": ("d.png", _png(img))}).json()
    assert len(a["layers"]) == 1 + len(client.get("/api/model").json()["layers"])
    for layer in a["layers"][1:]:
        shape = layer["shape"]
        q = f"c={shape[0] // 2}" + (f"&y={shape[1] // 2}&x={shape[2] // 2}" if len(shape) == 3 else "")
        u = client.get(f"/api/unit?id={a['id']}&layer={layer['index']}&{q}").json()
        assert u["kind"] != "other" and u["computed"] == pytest.approx(u["value"], rel=1e-4, abs=1e-5), u["layer"]
    cam = client.get(f"/api/attribution?id={a['id']}&method=gradcam").json()
    assert cam["size"] == [s, s] and cam["max"] <= 1.0


def test_an_exported_model_is_refused_with_the_reason(explain_model, tmp_path):
    from cnnlab.explain.explainer import Explainer, NotHookable
    from cnnlab.export.torchscript import export_torchscript

    ts, _ = export_torchscript(explain_model, tmp_path / "m.pt", parity_n=4)
    with pytest.raises(NotHookable, match="is an exported file; explain needs a run or model folder"):
        Explainer(ts)
    app = create_app(ts, ServeSettings())
    mount_explain(app, ts, ServeSettings())
    with TestClient(app) as c:
        r = c.get("/explain/api/model")
        assert r.status_code == 503 and "no torch layers to hook" in r.json()["error"]["message"]
        _no_traceback(r.text)


def test_a_large_photo_is_shown_small_with_its_aspect_and_resized_for_the_model(client):
    from PIL import Image

    photo = digit_like(300).resize((480, 300)).convert("RGB")  # the client's max_pixels is 250,000
    a = client.post("/api/analyse", files={"file": ("p.png", _png(photo))}).json()
    decoded, resized = a["steps"][0], a["steps"][1]
    assert "480x300, grey" in decoded["text"] and "28x28" in resized["text"]
    size = Image.open(io.BytesIO(base64.b64decode(decoded["png"].split(",")[1]))).size
    assert size == (192, 120)
    assert Image.open(io.BytesIO(base64.b64decode(resized["png"].split(",")[1]))).size == (28, 28)


def test_a_diverged_model_gets_a_clear_error_not_invalid_json(tmp_path):
    import torch

    from cnnlab.models import create_model
    from cnnlab.runs.model_file import save_model_file

    model = create_model("mnist_cnn", num_classes=10, in_channels=1, input_size=28).eval()
    model[0].weight.data[0, 0, 0, 0] = float("nan")
    meta = {"architecture": "mnist_cnn", "kwargs": {}, "classes": [str(i) for i in range(10)]}
    meta |= {"input_shape": [1, 28, 28], "mean": [0.5], "std": [0.25]}
    client = TestClient(create_explain_app(save_model_file(tmp_path / "model", model, meta)))
    r = client.post("/api/analyse", files={"file": ("d.png", _png(digit_like(28)))})
    # the server's warm-up finds the NaN output before any analysis: 503 with the reason, no path
    assert r.status_code == 503 and "NaN or infinite" in r.json()["error"]["message"]
    assert str(tmp_path) not in r.text
    assert torch.isnan(model[0].weight).any()
