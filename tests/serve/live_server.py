"""A real uvicorn server on 127.0.0.1 in a background thread, and raw-socket HTTP helpers, for the
slow-client, burst and decode-budget tests (and benchmarks/serve_abuse.py, which has its own copy)."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from contextlib import contextmanager

from cnnlab.serve.app import ServeSettings, create_app
from cnnlab.serve.server import uvicorn_server


@contextmanager
def live_server(model, settings: ServeSettings, backlog: int = 2048, app=None, ready: str = "/ready"):
    """Yield (host, port, app) of a server running ``model`` with ``settings`` (or ``app``, answering 200 on
    ``ready`` once started) on the set-up every cnnlab surface shares; stopped on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    app = app if app is not None else create_app(model, settings)
    server = uvicorn_server(app, settings, log_level="critical", backlog=backlog)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if get(host, port, ready)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            raise AssertionError("uvicorn did not become ready")
        yield host, port, app
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def get(host: str, port: int, path: str) -> tuple[int, bytes, dict]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def multipart(files: list[tuple[str, bytes]], field: str = "file") -> tuple[bytes, str]:
    boundary = "cnnlab-test-boundary"
    parts = [
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request_head(path: str, ctype: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    """Read one HTTP response from ``sock``: (status, lower-cased headers, body)."""
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def post(host: str, port: int, path: str, body: bytes, ctype: str, timeout: float = 30) -> tuple[int, dict, bytes]:
    """One POST on a fresh connection, sent in one piece; returns (status, headers, body)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request_head(path, ctype, len(body)) + body)
        return read_response(s)
