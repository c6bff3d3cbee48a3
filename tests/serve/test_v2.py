"""The Open Inference Protocol (KServe v2) routes: through TestClient for every error, and through the
real ``tritonclient`` against a live server for the binary and JSON encodings it sends."""

from __future__ import annotations

import base64
import json
import socket
import time
import warnings

import numpy as np
import pytest
from live_server import live_server, read_response, request_head
from PIL import Image
from serve_helpers import bomb_png, digit_like, encode, html_named_jpg, wait_ready

pytest.importorskip("fastapi")
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from fastapi.testclient import TestClient  # noqa: E402

import torch  # noqa: E402

from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.serve.app import ServeSettings, create_app  # noqa: E402
from cnnlab.serve.predictor import Predictor  # noqa: E402
from cnnlab.serve.v2 import served_name  # noqa: E402

LIMIT = 300_000


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor(model_dir)


@pytest.fixture(scope="module")
def client(model_dir):
    app = create_app(model_dir, ServeSettings(max_body_bytes=LIMIT, max_files=4, model_name="digits"))
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


def _pngs(n: int) -> list[bytes]:
    return [encode(digit_like(28, seed=i)) for i in range(n)]


def _infer(client, body: dict, name: str = "digits", **kw):
    return client.post(f"/v2/models/{name}/infer", content=json.dumps(body).encode(), **kw)


def _v2_error(r, status: int) -> str:
    """The protocol's error shape: "error" is the message; the request id rides beside it."""
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["error"], str) and body["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text and "/tmp" not in r.text
    return body["error"]


def test_served_name_comes_from_the_run_folder(tmp_path):
    assert served_name("runs/mnist/model/model.onnx") == "mnist"
    assert served_name("runs/my run") == "my-run"
    assert served_name("repo/cifar/1/model.xml") == "cifar"
    assert served_name("whatever", "given-1.0") == "given-1.0"
    with pytest.raises(CnnlabError, match="model name"):
        served_name("x", "../etc")


def test_server_and_model_metadata(client, predictor):
    assert client.get("/v2").json() == {
        "name": "cnnlab",
        "version": "1",
        "extensions": ["binary_tensor_data", "classification"],
    }
    meta = client.get("/v2/models/digits").json()
    assert meta["name"] == "digits" and meta["versions"] == ["1"] and meta["platform"] == "pytorch"
    assert meta["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}
    assert meta["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}
    assert meta["parameters"]["classes"] == predictor.classes and meta["parameters"]["mean"] == [0.13]
    assert "private" not in json.dumps(meta)  # the folder dataset's path never shows
    assert client.get("/v2/models/digits/versions/1").json() == meta
    assert client.get("/v2/models/digits/ready").json() == {"name": "digits", "ready": True}
    assert "no model 'other'" in _v2_error(client.get("/v2/models/other"), 404)
    _v2_error(client.get("/v2/models/digits/versions/2/ready"), 404)


def test_model_not_ready_is_503_with_retry_after(model_dir):
    c = TestClient(create_app(model_dir), raise_server_exceptions=False)  # no lifespan: never loaded
    name = served_name(model_dir)
    r = c.get(f"/v2/models/{name}/ready")
    assert "loading" in _v2_error(r, 503) and r.headers["retry-after"] == "1"


def test_tensor_input_gives_the_predictors_probabilities(client, predictor):
    x = predictor.preprocess([predictor.load(p) for p in _pngs(3)]).numpy()  # (3, 1, 28, 28)
    body = {
        "id": "req-7",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.tolist()}],
    }
    r = _infer(client, body)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert r.json()["id"] == "req-7" and r.json()["model_name"] == "digits"
    probs = np.asarray(out["probabilities"]["data"], dtype=np.float32).reshape(out["probabilities"]["shape"])
    expected = predictor.probabilities(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert out["index"]["data"] == expected.argmax(1).tolist()
    assert out["label"]["data"] == [predictor.classes[i] for i in expected.argmax(1)]
    flat = {**body["inputs"][0], "data": x.reshape(-1).tolist()}  # flat data is the same tensor
    assert _infer(client, {"inputs": [flat]}).json()["outputs"] == r.json()["outputs"]


def test_image_bytes_match_predict_and_classification_extension(client):
    files = _pngs(2)
    data = [base64.b64encode(f).decode() for f in files]
    body = {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": data}],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}, {"name": "label"}],
    }
    r = _infer(client, body)
    assert r.status_code == 200, r.text
    top3, label = r.json()["outputs"]
    assert top3["datatype"] == "BYTES" and top3["shape"] == [2, 3]
    for i, f in enumerate(files):
        ours = client.post("/predict?topk=3", files={"file": ("x.png", f)}).json()
        expect = [f"{t['probability']:f}:{t['index']}:{t['label']}" for t in ours["top"]]
        assert top3["data"][3 * i : 3 * i + 3] == expect
        assert label["data"][i] == ours["label"]


@pytest.mark.parametrize(
    "body, status, says",
    [
        ({"inputs": []}, 400, "exactly one input"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}, 400, "unknown input"),
        ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 28, 28], "data": []}]}, 400, "shape"),
        ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [5, 1, 28, 28], "data": []}]}, 400, "B <= 4"),
        ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [1, 2]}]}, 400, "784"),
        ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": ["a"] * 784}]}, 400, "784"),
        ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [[1], 2]}]}, 400, "784"),
        ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, -1, 28, 28]}]}, 400, "non-negative"),
        ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["***"]}]}, 400, "base64"),
        ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["AA=="]}]}, 400, "element"),
        ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["AA=="]}]}, 415, "image[0]"),
        ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [""]}]}, 422, "image[0]"),
        ({"id": 5, "inputs": []}, 400, "'id'"),
    ],
)
def test_bad_requests_are_4xx_in_the_protocols_error_shape(client, body, status, says):
    assert says in _v2_error(_infer(client, body), status)


def test_bad_bodies_non_finite_inputs_and_unknown_outputs(client):
    assert "not valid JSON" in _v2_error(client.post("/v2/models/digits/infer", content=b"{nope"), 400)
    deep = b"[" * 100_000 + b"]" * 100_000
    assert "not valid JSON" in _v2_error(client.post("/v2/models/digits/infer", content=deep), 400)
    nan = (
        '{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [NaN' + ", 0" * 783 + "]}]}"
    )
    assert "NaN" in _v2_error(client.post("/v2/models/digits/infer", content=nan.encode()), 400)
    image = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(_pngs(1)[0]).decode()]}
    assert "unknown output" in _v2_error(_infer(client, {"inputs": [image], "outputs": [{"name": "x"}]}), 400)
    gz = {"content-encoding": "gzip"}
    assert "uncompressed" in _v2_error(_infer(client, {"inputs": [image]}, headers=gz), 415)
    header = {"inference-header-content-length": "999999"}
    assert "does not fit" in _v2_error(_infer(client, {"inputs": [image]}, headers=header), 400)
    many = b"\x00\x00\x00\x00" * 50_000  # 50,000 empty elements in Triton's binary encoding, for shape [1]
    spec = {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(many)}}
    head = json.dumps({"inputs": [spec]}).encode()
    r = client.post(
        "/v2/models/digits/infer", content=head + many, headers={"inference-header-content-length": str(len(head))}
    )
    assert "but more element(s)" in _v2_error(r, 400)
    html = {**image, "data": [base64.b64encode(html_named_jpg()).decode()]}
    assert "HTML" in _v2_error(_infer(client, {"inputs": [html]}), 415)


def test_v2_infer_inherits_the_servers_limits(model_dir):
    big = ServeSettings(max_body_bytes=LIMIT, max_request_pixels=16_000_000, model_name="m")
    with TestClient(create_app(model_dir, big), raise_server_exceptions=False) as c:
        wait_ready(c)
        r = c.post("/v2/models/m/infer", content=b"x" * (LIMIT + 1))
        assert "over the limit" in _v2_error(r, 413)
        # pixel budget from the PNG headers: two 4000x4000 images (32 M pixels) over 16 M, nothing decoded
        bomb = base64.b64encode(bomb_png(4000, 4000)).decode()
        body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": [bomb, bomb]}]}
        t = time.monotonic()
        assert "per request" in _v2_error(_infer(c, body, name="m"), 413)
        assert time.monotonic() - t < 2
    full = ServeSettings(max_requests=0, model_name="m")  # every prediction request is over the limit
    with TestClient(create_app(model_dir, full), raise_server_exceptions=False) as c:
        wait_ready(c)
        r = _infer(c, {"inputs": []}, name="m")
        assert "request limit" in _v2_error(r, 503) and r.headers["retry-after"] == "1"
        assert c.get("/v2/models/m/ready").status_code == 200  # metadata routes are not predictions


def test_stalled_v2_upload_is_cut_with_408(predictor):
    settings = ServeSettings(read_timeout_s=0.5, model_name="m")
    with live_server(predictor, settings) as (host, port, _), socket.create_connection((host, port), timeout=10) as s:
        s.sendall(request_head("/v2/models/m/infer", "application/json", 1000) + b'{"inputs": [')
        status, headers, body = read_response(s)
    assert status == 408 and headers.get("connection") == "close"
    assert "no request data" in json.loads(body)["error"]


# ---- the real tritonclient ------------------------------------------------------------------------
def test_tritonclient_against_a_live_server(predictor):
    httpclient = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    files = _pngs(3)
    x = predictor.preprocess([predictor.load(f) for f in files]).numpy()
    expected = predictor.probabilities(torch.from_numpy(x)).numpy()
    with live_server(predictor, ServeSettings(model_name="digits")) as (host, port, _):
        tc = httpclient.InferenceServerClient(f"{host}:{port}")
        assert tc.is_server_live() and tc.is_server_ready() and tc.is_model_ready("digits")
        assert not tc.is_model_ready("other")
        assert tc.get_server_metadata()["extensions"] == ["binary_tensor_data", "classification"]
        assert tc.get_model_metadata("digits")["inputs"][0]["shape"] == [-1, 1, 28, 28]
        for binary in (True, False):  # tritonclient's default binary extension, and plain JSON
            tensor = httpclient.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x, binary_data=binary)
            outs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("probabilities", "label", "index")]
            res = tc.infer("digits", [tensor], outputs=outs, request_id="abc")
            np.testing.assert_allclose(res.as_numpy("probabilities"), expected, atol=1e-6)
            assert res.as_numpy("index").tolist() == expected.argmax(1).tolist()
            assert [v.decode() if isinstance(v, bytes) else v for v in res.as_numpy("label")] == [
                predictor.classes[i] for i in expected.argmax(1)
            ]
            assert res.get_response()["id"] == "abc"
        images = httpclient.InferInput("image", [3], "BYTES")
        images.set_data_from_numpy(np.array(files, dtype=np.object_))  # binary: length-prefixed files
        res = tc.infer("digits", [images])  # no outputs named: all three, binary
        np.testing.assert_allclose(res.as_numpy("probabilities"), expected, atol=1e-6)
        top = tc.infer("digits", [images], outputs=[httpclient.InferRequestedOutput("probabilities", class_count=2)])
        best = top.as_numpy("probabilities")[:, 0]
        assert [int(b.decode().split(":")[1]) for b in best] == expected.argmax(1).tolist()
        wrong = httpclient.InferInput("input", [1, 3, 28, 28], "FP32")
        wrong.set_data_from_numpy(np.zeros((1, 3, 28, 28), np.float32))
        with pytest.raises(InferenceServerException, match=r"must have shape \[B, 1, 28, 28\]"):
            tc.infer("digits", [wrong])
        tc.close()


def test_rgb_model_accepts_jpeg_bytes_of_any_mode(tmp_path):
    """An RGB model gets a grayscale JPEG and a palette PNG through the same decoding rule as /predict."""
    from cnnlab.models import create_model
    from cnnlab.runs.model_file import save_model_file

    torch.manual_seed(0)
    model = create_model("seed_cnn", num_classes=3, in_channels=3, input_size=32).eval()
    meta = {"architecture": "seed_cnn", "kwargs": {}, "classes": ["a", "b", "c"], "input_shape": [3, 32, 32]}
    folder = save_model_file(tmp_path / "rgb" / "model", model, {**meta, "mean": [0.5] * 3, "std": [0.25] * 3})
    gray = encode(digit_like(40), "JPEG")
    palette = encode(Image.merge("RGB", [digit_like(30, s) for s in range(3)]).convert("P"), "PNG")
    with TestClient(create_app(folder), raise_server_exceptions=False) as c:
        wait_ready(c)
        data = [base64.b64encode(f).decode() for f in (gray, palette)]
        r = _infer(c, {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": data}]}, name="rgb")
        assert r.status_code == 200, r.text
        single = [c.post("/predict", files={"file": ("f", f)}).json()["label"] for f in (gray, palette)]
        assert r.json()["outputs"][1]["data"] == single
