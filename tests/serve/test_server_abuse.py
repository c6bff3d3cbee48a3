"""Hostile-but-fair clients against a real server on 127.0.0.1, each test bounded in time and stopping
its own server: slow uploads and slow headers are cut while others are served, a burst of 200
keep-alive connections gets 200s and 503s with Retry-After (no resets: a 503 used to close the
connection, and the client's next request on it was reset), decode amplification is refused from
the image headers, and the KServe v2 health routes answer."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_helpers import bomb_png, digit_like, encode

pytest.importorskip("uvicorn")
from live_server import get, live_server, multipart, post, read_response, request_head  # noqa: E402

from cnnlab.serve.app import Admission, ApiError, ServeSettings, header_pixels  # noqa: E402
from cnnlab.serve.predictor import Predictor  # noqa: E402


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor(model_dir)


def _slow_down(app, seconds: float) -> None:
    """Make every forward pass take at least ``seconds`` (a stand-in for a bigger model)."""
    p = app.state.cnnlab["predictor"]
    inner = p.probabilities

    def slow(x):
        time.sleep(seconds)
        return inner(x)

    p.probabilities = slow


def test_slow_uploads_and_slow_headers_are_cut_while_others_are_served(predictor):
    settings = ServeSettings(read_timeout_s=1.0, min_body_rate=1000, max_concurrency=2, max_queue=8)
    body, ctype = multipart([("d.png", encode(digit_like()))])
    with live_server(predictor, settings) as (host, port, _):
        stalled, trickling, slow_headers = [], [], []
        for _ in range(8):  # headers, 10 body bytes, then nothing
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(request_head("/predict", ctype, len(body)) + body[:10])
            stalled.append(s)
        for _ in range(8):  # one body byte every 0.2 s: 5 bytes/s, far under 1000
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(request_head("/predict", ctype, len(body)))
            trickling.append(s)
        for _ in range(4):  # request headers one byte every 0.2 s ("slowloris")
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(b"POST /predict HTTP/1.1\r\n")
            slow_headers.append(s)
        stop = threading.Event()

        def trickle():
            i = 0
            while not stop.is_set() and i < len(body):
                for s in trickling + slow_headers:
                    with contextlib.suppress(OSError):
                        s.send(body[i : i + 1] if s in trickling else b"X")
                i += 1
                stop.wait(0.2)

        feeder = threading.Thread(target=trickle, daemon=True)
        feeder.start()
        latencies = []
        start = time.monotonic()
        while time.monotonic() - start < 2.5:  # ordinary clients, meanwhile
            t0 = time.perf_counter()
            status, _, _ = post(host, port, "/predict", body, ctype)
            latencies.append(time.perf_counter() - t0)
            assert status == 200
        stop.set()
        feeder.join(5)
        for s in stalled + trickling:  # each got a 408 and its connection was closed
            s.settimeout(5)
            status, headers, raw = read_response(s)
            assert status == 408 and headers.get("connection") == "close" and b'"timeout"' in raw
            s.close()
        for s in slow_headers:  # closed without a response
            s.settimeout(5)
            assert s.recv(100) == b""
            s.close()
    assert len(latencies) >= 10 and max(latencies) < 1.0, latencies


def test_a_burst_of_200_connections_gets_answers_not_resets(predictor):
    settings = ServeSettings(max_concurrency=1, max_queue=4, max_requests=16)
    body, ctype = multipart([("d.png", encode(digit_like()))])
    with live_server(predictor, settings) as (host, port, app):
        _slow_down(app, 0.02)
        barrier = threading.Barrier(200)

        def one(_):  # 3 requests on one keep-alive connection, as load generators send them
            out = []
            try:
                with socket.create_connection((host, port), timeout=60) as s:
                    barrier.wait(30)
                    for _ in range(3):
                        s.sendall(request_head("/predict", ctype, len(body)) + body)
                        status, headers, _ = read_response(s)
                        out.append((status, headers.get("retry-after")))
            except (OSError, http.client.HTTPException) as exc:  # a reset or a closed connection: forbidden
                out.append((type(exc).__name__, None))
            return out

        start = time.monotonic()
        with ThreadPoolExecutor(200) as pool:
            results = [r for rs in pool.map(one, range(200)) for r in rs]
        elapsed = time.monotonic() - start
        assert get(host, port, "/ready")[0] == 200  # still serving afterwards
    statuses = [s for s, _ in results]
    assert set(statuses) <= {200, 503}, {s: statuses.count(s) for s in set(statuses)}
    assert len(statuses) == 600 and statuses.count(503) > 0 and statuses.count(200) >= 5
    assert all(retry == "1" for s, retry in results if s == 503)
    assert elapsed < 60


def test_decode_amplification_is_refused_from_the_headers(predictor):
    big = bomb_png(4000, 4000)  # a few KB, 16 M pixels once decoded
    assert len(big) < 50_000 and header_pixels(big, 16_000_000) == 16_000_000
    body, ctype = multipart([(f"{i}.png", big) for i in range(64)], field="files")
    normal, nctype = multipart([("d.png", encode(digit_like()))])
    settings = ServeSettings(max_body_bytes=16 * 1024 * 1024)
    with live_server(predictor, settings) as (host, port, _), ThreadPoolExecutor(4) as pool:
        start = time.perf_counter()
        batches = [pool.submit(post, host, port, "/predict/batch", body, ctype) for _ in range(4)]
        t0 = time.perf_counter()
        assert post(host, port, "/predict", normal, nctype)[0] == 200
        normal_latency = time.perf_counter() - t0
        answers = [f.result() for f in batches]
        elapsed = time.perf_counter() - start
    for status, _, raw in answers:
        assert status == 413 and b"too_many_pixels" in raw and b"1,024,000,000" in raw
    assert elapsed < 10 and normal_latency < 5


def test_the_pixel_budget_is_shared_between_requests():
    settings = ServeSettings(max_request_pixels=20_000_000, max_total_pixels=30_000_000)

    async def scenario():
        admission = Admission(settings)
        async with admission.slot(16_000_000):
            with pytest.raises(ApiError) as busy:
                async with admission.slot(16_000_000):
                    pass
            async with admission.slot(10_000_000):  # fits next to the first
                assert admission.pixels == 26_000_000
        assert admission.pixels == 0 and admission.waiting == 0
        with pytest.raises(ApiError) as too_big:
            async with admission.slot(25_000_000):
                pass
        return busy.value, too_big.value

    busy, too_big = asyncio.run(scenario())
    assert busy.status_code == 503 and busy.headers == {"retry-after": "1"} and "pixels" in busy.detail
    assert too_big.status_code == 413 and too_big.code == "too_many_pixels"


def test_kserve_v2_health_routes(predictor, model_dir):
    with live_server(predictor, ServeSettings()) as (host, port, _):
        assert get(host, port, "/v2/health/live")[:2] == (200, b'{"live":true}')
        assert get(host, port, "/v2/health/ready")[:2] == (200, b'{"ready":true}')
    from fastapi.testclient import TestClient

    from cnnlab.serve.app import create_app

    c = TestClient(create_app(model_dir), raise_server_exceptions=False)  # no lifespan: never loaded
    assert c.get("/v2/health/live").status_code == 200
    r = c.get("/v2/health/ready")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
