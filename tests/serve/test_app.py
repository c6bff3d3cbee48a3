"""The FastAPI app through Starlette's TestClient: every route, every error, and the hardening limits."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_helpers import (
    bomb_png,
    cmyk_jpeg,
    digit_like,
    encode,
    html_named_jpg,
    sixteen_bit_png,
    truncated_jpeg,
    wait_ready,
)

pytest.importorskip("fastapi")
with warnings.catch_warnings():  # Starlette >= 1.x warns (a UserWarning) that TestClient still uses httpx
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from fastapi.testclient import TestClient  # noqa: E402

from cnnlab.serve.app import ServeSettings, create_app, sniff_type  # noqa: E402
from cnnlab.serve.predictor import Predictor  # noqa: E402

LIMIT = 200_000  # a small body limit keeps the over-limit uploads cheap


@pytest.fixture(scope="module")
def client(model_dir):
    app = create_app(model_dir, ServeSettings(max_body_bytes=LIMIT, max_files=4))
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor(model_dir)


def _upload(client, data: bytes, name: str = "x.png", topk: int | None = None, **kw):
    url = "/predict" if topk is None else f"/predict?topk={topk}"
    return client.post(url, files={"file": (name, data, "application/octet-stream")}, **kw)


def _assert_clean_error(r, status: int, code: str | None = None) -> dict:
    """A JSON error with the request id, and nothing a client should not see."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == status and err["request_id"] == r.headers["x-request-id"]
    if code is not None:
        assert err["code"] == code, err
    for leak in ("Traceback", "/tmp", "/home", "site-packages", "torch", 'File "'):
        assert leak not in r.text, (leak, r.text)
    return err


def test_health_ready_model_docs_and_page(client, model_dir):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    meta = client.get("/model").json()
    assert meta["classes"][:2] == ["class_0", "class_1"] and meta["input_shape"] == [1, 28, 28]
    assert meta["dataset"] == "folder" and meta["metrics"] == {"accuracy": 0.5}
    raw = client.get("/model").text
    assert str(model_dir) not in raw and "versions" not in raw and "private" not in raw and "config" not in raw
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/health", "/ready", "/model"} <= set(spec["paths"])
    assert spec["info"]["version"] == "1"  # the API's version, not a library's
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="file"' in page.text and "fetch(" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no external assets
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text  # not FastAPI's CDN-hosted Swagger UI
    assert client.get("/redoc").status_code == 404


def test_ready_is_503_until_the_model_is_loaded(model_dir, tmp_path):
    app = create_app(model_dir)
    c = TestClient(app, raise_server_exceptions=False)  # no `with`: the lifespan (loading) never ran
    err = _assert_clean_error(c.get("/ready"), 503, "not_ready")
    assert "loading" in err["message"]
    assert c.get("/ready").headers["retry-after"] == "1"
    _assert_clean_error(_upload(c, encode(digit_like())), 503, "not_ready")
    assert c.get("/health").status_code == 200  # alive while not ready
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in model_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes()[:100] if f.suffix == ".safetensors" else f.read_bytes())
    with TestClient(create_app(broken), raise_server_exceptions=False) as c2:
        time.sleep(0.5)
        err = _assert_clean_error(c2.get("/ready"), 503, "not_ready")
        assert err["message"] == "model failed to load"


def test_an_exported_onnx_file_is_served_like_the_model_folder(onnx_model, predictor):
    onnx_file = onnx_model
    data = encode(digit_like(28, seed=5))
    with TestClient(create_app(onnx_file, ServeSettings()), raise_server_exceptions=False) as c:
        wait_ready(c)
        body = _upload(c, data, "digit.png", topk=3).json()
        assert c.get("/model").json()["classes"] == predictor.classes
    expected = predictor.predict(data, topk=3)[0]
    assert [t["label"] for t in body["top"]] == [t["label"] for t in expected["top"]]
    np.testing.assert_allclose(body["top"][0]["probability"], expected["probability"], atol=1e-5)


def test_predict_returns_topk_equal_to_the_predictor(client, predictor):
    data = encode(digit_like(28, seed=3))
    r = _upload(client, data, "digit.png", topk=3, headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] == "abc-123" == r.headers["x-request-id"]
    assert body["filename"] == "digit.png" and len(body["top"]) == 3
    expected = predictor.predict(data, topk=3)[0]
    assert [t["label"] for t in body["top"]] == [t["label"] for t in expected["top"]]
    np.testing.assert_allclose([t["probability"] for t in body["top"]], [t["probability"] for t in expected["top"]])
    assert body["label"] == expected["label"]
    probs = [t["probability"] for t in body["top"]]
    assert probs == sorted(probs, reverse=True)
    assert _upload(client, data, topk=50).status_code == 200  # more than the classes: all of them
    assert len(_upload(client, data, topk=50).json()["top"]) == 10
    bad_id = _upload(client, data, headers={"X-Request-ID": "<script>"})
    assert bad_id.json()["request_id"] != "<script>" and len(bad_id.json()["request_id"]) == 32


def _exif_rotated() -> tuple[bytes, bytes, bytes]:
    """(PNG stored sideways with EXIF orientation 6, the upright PNG, the sideways PNG without EXIF)."""
    upright = digit_like(28, seed=5).resize((28, 40))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6: the viewer rotates 270
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "PNG", exif=exif.tobytes()), encode(upright), encode(stored)


@pytest.mark.parametrize(
    "name,make",
    [
        ("cmyk.jpg", cmyk_jpeg),
        ("sixteen.png", sixteen_bit_png),
        ("rgba.png", lambda: encode(digit_like().convert("RGBA"))),
        ("la.png", lambda: encode(digit_like().convert("LA"))),
        ("palette.gif", lambda: encode(digit_like().convert("P"), "GIF")),
        ("big.bmp", lambda: encode(digit_like(200).convert("RGB"), "BMP")),
        ("photo.webp", lambda: encode(digit_like(64).convert("RGB"), "WEBP", lossless=True)),
        ("scan.tif", lambda: encode(digit_like(), "TIFF")),
    ],
)
def test_every_mode_and_format_is_served_like_the_predictor(client, predictor, name, make):
    data = make()
    r = _upload(client, data, name, topk=10)
    assert r.status_code == 200, r.text
    expected = predictor.predict(data, topk=10)[0]
    got = {t["label"]: t["probability"] for t in r.json()["top"]}
    want = {t["label"]: t["probability"] for t in expected["top"]}
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), atol=1e-6)


def test_exif_orientation_is_undone(client):
    rotated, upright, sideways = _exif_rotated()

    def probs(data):
        return [
            t["probability"] for t in sorted(_upload(client, data, topk=10).json()["top"], key=lambda t: t["index"])
        ]

    np.testing.assert_allclose(probs(rotated), probs(upright), atol=1e-6)
    assert not np.allclose(probs(sideways), probs(upright), atol=1e-4)  # the orientation matters here


@pytest.mark.parametrize(
    "name,make,status,code",
    [
        ("empty.png", lambda: b"", 422, "empty"),
        ("cut.jpg", truncated_jpeg, 422, "truncated"),
        ("page.jpg", html_named_jpg, 415, "unsupported_type"),
        ("notes.png", lambda: b"just some text, not pixels\n" * 3, 415, "unsupported_type"),
        ("head.png", lambda: encode(digit_like())[:40], 422, "undecodable"),
        ("garbage.jpg", lambda: b"\xff\xd8\xff" + bytes(range(256)) * 4, 422, None),
    ],
)
def test_bad_uploads_are_clean_json_errors(client, name, make, status, code):
    err = _assert_clean_error(_upload(client, make(), name), status, code)
    assert name in err["message"]


@pytest.mark.parametrize("side", [20_000, 5_000])
def test_decompression_bomb_is_refused_fast(client, side):
    """20000^2 is over Pillow's own limit; 5000^2 (25 M pixels) is under Pillow's but over ours (16 M)."""
    bomb = bomb_png(side, side)
    assert len(bomb) < LIMIT and sniff_type(bomb) == "png"
    start = time.perf_counter()
    r = _upload(client, bomb, "bomb.png")
    assert time.perf_counter() - start < 1.0
    err = _assert_clean_error(r, 422, "too_many_pixels")
    assert "too large" in err["message"]


def test_body_limit_by_content_length_and_by_streamed_bytes(client):
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (LIMIT + 10)
    err = _assert_clean_error(_upload(client, big, "big.png"), 413, "too_large")
    assert f"{LIMIT:,}" in err["message"]
    # no Content-Length: a chunked body is counted while it streams in
    boundary = "b0undary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.png"\r\n\r\n'.encode()

    def chunks():
        yield head
        for _ in range(LIMIT // 10_000 + 2):
            yield b"\x00" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post("/predict", content=chunks(), headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    _assert_clean_error(r, 413, "too_large")
    bogus = client.post("/predict", content=b"x", headers={"content-length": "nonsense"})
    _assert_clean_error(bogus, 400, "bad_request")


def test_batch_reports_each_file_and_limits_the_count(client, predictor):
    good = encode(digit_like(28, 1))
    files = [("files", ("a.png", good, "image/png")), ("files", ("b.jpg", html_named_jpg(), "image/jpeg"))]
    files.append(("files", ("c.png", sixteen_bit_png(), "image/png")))
    r = client.post("/predict/batch?topk=2", files=files)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["filename"] for x in res] == ["a.png", "b.jpg", "c.png"]
    assert res[0]["label"] == predictor.predict(good)[0]["label"] and len(res[0]["top"]) == 2
    assert res[1]["error"]["status"] == 415 and "label" not in res[1]
    assert len(res[2]["top"]) == 2
    five = [("files", (f"{i}.png", good, "image/png")) for i in range(5)]
    _assert_clean_error(client.post("/predict/batch", files=five), 413, "too_many_files")


def test_validation_and_routing_errors_are_json(client):
    _assert_clean_error(_upload(client, encode(digit_like()), topk=0), 422, "invalid_request")
    err = _assert_clean_error(client.post("/predict"), 422, "invalid_request")
    assert "file" in err["message"]
    _assert_clean_error(client.get("/nowhere"), 404, "not_found")
    _assert_clean_error(client.get("/predict"), 405, "method_not_allowed")


def test_internal_errors_hide_details(model_dir):
    with TestClient(create_app(model_dir), raise_server_exceptions=False) as c:
        wait_ready(c)
        predictor = c.app.state.cnnlab["predictor"]

        def boom(*a, **k):
            raise RuntimeError("secret detail at /srv/models/x.py")

        predictor.format = boom
        r = _upload(c, encode(digit_like()))
        err = _assert_clean_error(r, 500, "internal_error")
        assert "secret" not in r.text and "request id" in err["message"]


def _concurrent_posts(c, n: int, data: bytes) -> list:
    out: list = [None] * n

    def post(i):
        out[i] = _upload(c, data, f"{i}.png", topk=10)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_requests_over_the_queue_limit_get_503(model_dir):
    settings = ServeSettings(max_concurrency=1, max_queue=0)
    with TestClient(create_app(model_dir, settings), raise_server_exceptions=False) as c:
        wait_ready(c)
        predictor = c.app.state.cnnlab["predictor"]
        slow = predictor.probabilities

        def slow_probs(x):
            time.sleep(0.8)
            return slow(x)

        predictor.probabilities = slow_probs
        responses = _concurrent_posts(c, 3, encode(digit_like()))
        statuses = sorted(r.status_code for r in responses)
        assert statuses[0] == 200 and 503 in statuses, statuses
        busy = next(r for r in responses if r.status_code == 503)
        _assert_clean_error(busy, 503, "busy")
        assert busy.headers["retry-after"] == "1"
        assert _upload(c, encode(digit_like())).status_code == 200  # the slot is free again


def test_micro_batching_groups_requests_and_keeps_results(model_dir, predictor):
    settings = ServeSettings(batch_window_ms=300, max_batch=8, max_concurrency=8)
    with TestClient(create_app(model_dir, settings), raise_server_exceptions=False) as c:
        wait_ready(c)
        served = c.app.state.cnnlab["predictor"]
        sizes: list[int] = []
        inner = served.probabilities

        def record(x):
            sizes.append(len(x))
            return inner(x)

        served.probabilities = record
        data = encode(digit_like(28, 7))
        responses = _concurrent_posts(c, 6, data)
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert sum(sizes) == 6 and max(sizes) > 1, sizes
    want = predictor.predict(data, topk=10)[0]["top"]
    for r in responses:
        np.testing.assert_allclose(
            [t["probability"] for t in r.json()["top"]], [t["probability"] for t in want], atol=1e-6
        )
    assert json.dumps(responses[0].json()).count("request_id") == 1


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from Linux /proc")
def test_bomb_refusal_needs_little_memory(tmp_path):
    """Decoding the bombs in a fresh process (no torch) with the server's cap stays far below their 400 MB."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(20_000, 20_000))
    small = tmp_path / "small_bomb.png"
    small.write_bytes(bomb_png(5_000, 5_000))
    code = (
        "import sys\n"
        "from cnnlab.data.images import ImageReadError, open_image\n"
        "for path in sys.argv[2:]:\n"
        "    try:\n"
        "        open_image(path, max_pixels=int(sys.argv[1]))\n"
        "        raise SystemExit('decoded ' + path)\n"
        "    except ImageReadError as exc:\n"
        "        assert exc.kind == 'too_large', exc\n"
        "print(next(ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')))\n"
    )
    cap = str(ServeSettings().max_pixels)
    out = subprocess.run([sys.executable, "-c", code, cap, str(bomb), str(small)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    peak_mb = int(out.stdout.strip()) / 1024  # VmHWM (peak RSS of this process image) in KiB
    assert peak_mb < 100, f"peak RSS {peak_mb:.0f} MB"  # about 32 MB measured; decoding would need 400 MB
