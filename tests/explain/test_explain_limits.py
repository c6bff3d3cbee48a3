"""The explainer behind the server's guarantees: what it keeps is bounded in bytes (never the decoded upload),
uploads meet the shared pixel budget and queue (503 + Retry-After), an analysis whose client has gone is
dropped before it runs, and no answer or note holds an absolute path."""

from __future__ import annotations

import base64
import http.client
import io
import socket
import struct
import threading
import time
import zlib

import numpy as np
import pytest
import torch
from explain_helpers import digit_like, start_server
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from cnnlab.explain.app import create_explain_app  # noqa: E402
from cnnlab.explain.explainer import Explainer  # noqa: E402
from cnnlab.serve.server import ServeSettings  # noqa: E402


def zero_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of zeros: a few KB, ``width * height`` pixels once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"\x00" * (height * (1 + (width + 7) // 8))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def test_a_kept_analysis_holds_no_decoded_upload_and_the_cache_stays_within_its_bytes(explain_model):
    e = Explainer(explain_model)
    big = np.random.default_rng(0).random((3000, 2000, 1), dtype=np.float32)  # 24 MB decoded
    a = e.analyse(big)
    assert a.nbytes < 2_000_000  # the model-sized input, its layers and a <= 192 px display copy
    assert all(v.nbytes < 200_000 for v in vars(a).values() if isinstance(v, np.ndarray))
    steps = e.analysis_json(a)["steps"]
    assert "2000x3000" in steps[0]["text"] and "28x28" in steps[1]["text"]
    small = Explainer(explain_model, keep_bytes=3 * a.nbytes)
    ids = [small.analyse(np.asarray(digit_like(28), np.float32)[..., None] / 255).id for _ in range(6)]
    assert list(small._analyses) == ids[-3:] and small.kept_bytes <= 3 * a.nbytes  # oldest dropped first
    small.keep_bytes = 1  # smaller than any analysis: the newest is still kept
    newest = small.analyse(np.zeros((28, 28, 1), np.float32)).id
    assert list(small._analyses) == [newest] and small.kept_bytes == small.get(newest).nbytes


def test_uploads_meet_the_pixel_budgets_and_the_queue(explain_model):
    settings = ServeSettings(max_pixels=30_000_000, max_request_pixels=20_000_000, max_total_pixels=20_000_000)
    settings.max_queue = 2
    app = create_explain_app(explain_model, settings)
    big = {"file": ("big.png", zero_png(4000, 4000))}  # 2 KB, 16 M pixels
    with TestClient(app) as c:
        app.state.explain.admission.budget.used = 10_000_000  # another large upload is queued
        r = c.post("/api/analyse", files=big)
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "pixels" in r.json()["error"]["message"]
        app.state.explain.admission.budget.used = 0
        huge = {"file": ("huge.png", zero_png(5000, 5000))}  # over the per-request budget, under max_pixels
        r = c.post("/api/analyse", files=huge)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_pixels"
        app.state.explain.admission.waiting = 3  # one running, two waiting: the queue is full
        r = c.post("/api/analyse", files=big)
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "busy"
        app.state.explain.admission.waiting = 0
        assert c.post("/api/analyse", files=big).status_code == 200


def test_analyses_whose_clients_have_gone_are_dropped(explain_model):
    """Eight uploads queue behind a slow analysis, then their clients give up: none of them is run, and
    the next visitor is served at once (one worker used to work through every abandoned request)."""
    explainer = Explainer(explain_model)
    ran, inner = [], explainer.analyse

    def slow(image, label=None):
        ran.append(image.shape)
        time.sleep(0.5)
        return inner(image, label)

    explainer.analyse = slow
    settings = ServeSettings(max_body_bytes=1_000_000)
    host, port, stop = start_server(create_explain_app(explainer, settings))
    try:
        request = _upload_request(_png(digit_like(28)))
        clients = []
        for _ in range(9):
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(request)
            clients.append(s)
        time.sleep(0.3)  # the first is running, the others wait for the worker
        for s in clients:
            s.close()  # every client gives up
        time.sleep(0.5)
        t0 = time.perf_counter()
        with socket.create_connection((host, port), timeout=30) as s:
            s.sendall(request)
            resp = http.client.HTTPResponse(s)
            resp.begin()
            status = resp.status
        latency = time.perf_counter() - t0
    finally:
        stop()
    assert status == 200 and len(ran) <= 3, len(ran)  # the abandoned ones never reached the model
    assert latency < 3.0, latency


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _upload_request(data: bytes) -> bytes:
    """A whole ``POST /api/analyse`` with ``data`` as its multipart ``file``."""
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + data + b"\r\n--b--\r\n"
    )
    head = "POST /api/analyse HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _folder_run(tmp_path, photos: dict[str, Image.Image] | None = None):
    """A run folder trained on an image folder; without ``photos`` the folder has moved away since."""
    from cnnlab.models import create_model
    from cnnlab.runs.model_file import save_model_file

    data, run = tmp_path / "private" / "photos", tmp_path / "run"
    meta = {"architecture": "seed_cnn", "kwargs": {}, "classes": ["cat", "dog"], "input_shape": [1, 28, 28]}
    meta |= {"mean": [0.5], "std": [0.25], "dataset": f"folder:{data}"}
    model = create_model("seed_cnn", num_classes=2, in_channels=1, input_size=28).eval()
    save_model_file(run / "model", model, meta)
    (run / "config.yaml").write_text(f"data:\n  name: folder:{data}\n")
    (run / "split.csv").write_text("split,source,label\ntrain,cat/a.png,0\ntest,dog/a.png,1\ntest,cat/b.png,0\n")
    for name, img in (photos or {}).items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        img.save(data / name)
    return run


@pytest.fixture
def moved_run(tmp_path):
    return _folder_run(tmp_path)


def test_the_sample_strip_is_made_once_of_small_copies(tmp_path):
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (900, 1200, 3), dtype=np.uint8))
    app = create_explain_app(_folder_run(tmp_path, {"dog/a.png": photo, "cat/b.png": photo}))
    c = TestClient(app)
    first = c.get("/api/samples")
    rows = first.json()["samples"]
    assert [r["id"] for r in rows] == ["cat/b.png", "dog/a.png"]
    for r in rows:
        shown = Image.open(io.BytesIO(base64.b64decode(r["png"].split(",")[1])))
        assert max(shown.size) <= 192 and shown.size[0] > shown.size[1]  # a display copy, aspect kept
    (tmp_path / "private" / "photos" / "dog" / "a.png").unlink()  # made once: not read again
    assert c.get("/api/samples").content == first.content


def test_no_absolute_path_in_any_answer_or_note(moved_run, tmp_path):
    c = TestClient(create_explain_app(moved_run))
    s = c.get("/api/samples")
    assert s.status_code == 200 and s.json()["samples"] == [] and "photos" in s.json()["note"]
    r = c.post("/api/analyse/sample?index=0")
    assert r.status_code == 422
    for text in (s.text, r.text, c.get("/api/model").text):
        assert str(tmp_path) not in text and "/private/" not in text


def test_uploads_only_unless_test_images_are_shared(explain_model):
    c = TestClient(create_explain_app(explain_model, test_images=False))
    assert c.get("/api/model").json()["test_images"] is False
    s = c.get("/api/samples").json()
    assert s["samples"] == [] and "uploaded images only" in s["note"]
    r = c.post("/api/analyse/sample?index=0")
    assert r.status_code == 404 and r.json()["error"]["code"] == "no_test_images"
    assert c.post("/api/analyse", files={"file": ("d.png", _png(digit_like(28)))}).status_code == 200
    shared = TestClient(create_explain_app(explain_model))  # standalone cnnlab explain: the run's own page
    assert shared.get("/api/model").json()["test_images"] is True and len(shared.get("/api/samples").json()["samples"])


def test_the_worker_thread_is_the_only_one_touching_the_model(explain_model):
    """Grad-CAM and the layer hooks mutate the model; every call runs on the explainer's one thread."""
    explainer = Explainer(explain_model)
    threads, inner = set(), explainer.unit_json

    def spy(*args):
        threads.add(threading.current_thread().name)
        return inner(*args)

    explainer.unit_json = spy
    c = TestClient(create_explain_app(explainer))
    a = c.post("/api/analyse", files={"file": ("d.png", _png(digit_like(28)))}).json()
    for _ in range(3):
        assert c.get(f"/api/unit?id={a['id']}&layer=1&c=0").status_code == 200
    assert len(threads) == 1 and next(iter(threads)).startswith("cnnlab-explain")
    assert torch.is_grad_enabled()
