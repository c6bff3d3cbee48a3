"""A real uvicorn server on 127.0.0.1 (a free port chosen by the OS): a short bounded load, raw-socket limits,
and the upload page in headless Chromium."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from serve_helpers import bomb_png, digit_like, encode

from chromium_helpers import browser_page

uvicorn = pytest.importorskip("uvicorn")
from cnnlab.serve.app import ServeSettings  # noqa: E402


@pytest.fixture(scope="module")
def server(model_dir):
    """(host, port) of a uvicorn server running the app in a background thread; stopped after the module."""
    from live_server import live_server

    with live_server(model_dir, ServeSettings(max_body_bytes=1_000_000)) as (host, port, _):
        yield host, port


def _get(host, port, path):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        conn.close()


def _multipart(data: bytes, name: str = "x.png") -> tuple[bytes, str]:
    boundary = "cnnlab-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def _post(conn: http.client.HTTPConnection, body: bytes, ctype: str, path: str = "/predict?topk=3"):
    conn.request("POST", path, body=body, headers={"Content-Type": ctype})
    r = conn.getresponse()
    return r.status, r.read(), dict(r.getheaders())


def test_bounded_load_has_no_errors(server):
    """200 requests at concurrency 8 over keep-alive connections: every one answered 200 and well-formed."""
    host, port = server
    body, ctype = _multipart(encode(digit_like(28, 1)))
    n, workers = 200, 8

    def worker(count: int) -> list[int]:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        statuses = []
        try:
            for _ in range(count):
                status, raw, _ = _post(conn, body, ctype)
                statuses.append(status if len(json.loads(raw)["top"]) == 3 else -1)
        finally:
            conn.close()
        return statuses

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        statuses = [s for chunk in pool.map(worker, [n // workers] * workers) for s in chunk]
    elapsed = time.perf_counter() - start
    assert len(statuses) == n and statuses.count(200) == n, {s: statuses.count(s) for s in set(statuses)}
    assert elapsed < 120


def test_real_http_limits_and_headers(server):
    host, port = server
    status, raw, headers = _get(host, port, "/health")
    assert status == 200 and json.loads(raw) == {"status": "ok"}
    assert "server" not in {k.lower() for k in headers}  # no software name or version
    assert "x-request-id" in {k.lower() for k in headers}
    # Content-Length over the limit: the answer comes before a single body byte is sent
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(500 * 1024 * 1024))
    conn.endheaders()
    start = time.perf_counter()
    r = conn.getresponse()
    err = json.loads(r.read())["error"]
    assert r.status == 413 and err["code"] == "too_large" and time.perf_counter() - start < 5
    conn.close()
    # a decompression bomb over the wire
    body, ctype = _multipart(bomb_png(20_000, 20_000), "bomb.png")
    conn = http.client.HTTPConnection(host, port, timeout=10)
    start = time.perf_counter()
    status, raw, _ = _post(conn, body, ctype)
    assert status == 422 and json.loads(raw)["error"]["code"] == "too_many_pixels"
    assert time.perf_counter() - start < 1.0
    conn.close()


@contextmanager
def _browser_page(server, path: str):
    """(page at http://server/path, list of requests that left the server) in headless Chromium."""
    host, port = server
    with browser_page(viewport={"width": 1280, "height": 720}) as page:  # playwright's default size
        external: list[str] = []
        page.on("request", lambda req: external.append(req.url) if f":{port}/" not in req.url else None)
        page.goto(f"http://{host}:{port}{path}")
        yield page, external


@pytest.mark.browser
def test_upload_page_in_headless_chromium(server, tmp_path):
    image = tmp_path / "digit.png"
    digit_like(28, 3).save(image)
    with _browser_page(server, "/") as (page, external):
        page.wait_for_function("document.getElementById('model').textContent.includes('classes')")
        assert "seed_cnn" in page.text_content("#model")
        page.fill("#topk", "3")
        page.set_input_files("#file", str(image))
        page.click("#submit")
        page.wait_for_selector("#results .row")
        rows = page.query_selector_all("#results .row")
        labels = [r.query_selector(".label").text_content() for r in rows]
        widths = [r.query_selector(".bar").evaluate("e => e.style.width") for r in rows]
        pcts = [float(r.query_selector(".pct").text_content().rstrip("%")) for r in rows]
        assert len(rows) == 3 and all(label.startswith("class_") for label in labels)
        assert pcts == sorted(pcts, reverse=True) and all(w.endswith("%") for w in widths)
        # an HTML file named .jpg: the page shows the server's error, no rows
        bad = tmp_path / "page.jpg"
        bad.write_bytes(b"<!doctype html><html></html>")
        page.set_input_files("#file", str(bad))
        page.click("#submit")
        page.wait_for_function("document.getElementById('error').textContent.length > 0")
        assert "415" in page.text_content("#error")
        assert page.query_selector_all("#results .row") == []
        assert external == [], external  # no external assets


@pytest.mark.browser
def test_api_docs_page_renders_offline_in_headless_chromium(server):
    with _browser_page(server, "/docs") as (page, external):
        page.wait_for_selector("section.op")
        sections = page.query_selector_all(".op")
        ops = {(s.get_attribute("data-method"), s.get_attribute("data-path")) for s in sections}
        assert {("post", "/predict"), ("post", "/predict/batch"), ("get", "/ready"), ("get", "/model")} <= ops
        predict = page.query_selector('.op[data-path="/predict"]')
        text = predict.text_content()
        assert "topk" in text and "file" in text and "413" in text  # query parameter, upload field, a status
        assert 'curl -s -X POST -F "file=@image.png"' in predict.query_selector("pre").text_content()
        assert page.text_content("#error") == "" and external == [], external
