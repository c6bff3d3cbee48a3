"""The one HTTP set-up that every cnnlab web surface runs on: limits, timeouts, bounded queues, one server.

``cnnlab serve`` (predictions, and the KServe v2 routes), the explainer mounted at ``/explain/`` and the
standalone ``cnnlab explain`` are all built by :func:`hardened_app` and started by :func:`run_server`,
so a client meets the same guarantees on every route:

* the connection (:mod:`cnnlab.serve.slow_clients`): request headers that do not arrive within
  ``read_timeout_s`` close the connection; idle keep-alive connections close after 5 s; no
  ``Server`` header.
* :class:`Guard` (pure ASGI, outermost): a request id (``X-Request-ID``) on every answer; bodies
  over ``max_body_bytes`` refused with 413 from ``Content-Length`` before anything is read, or
  while counting a chunked upload; a body that stalls for ``read_timeout_s`` or averages under
  ``min_body_rate`` bytes/s cut with 408 and the connection closed. A POST to a route that does
  work (registered with :meth:`Limits.route`) is refused with 503 + ``Retry-After`` before its body
  is read when ``max_requests`` of them are in progress or the route's queue is full; the
  connection stays open so the client reads the answer instead of a reset.
* :class:`Admission`, once a body is in: the decoded size of every upload comes from its header
  (no pixel decoded) and is checked against ``max_request_pixels`` (413) and against a
  :class:`PixelBudget` that all surfaces of one process share (503), so decoded images held at
  once stay bounded whichever route they came through. Requests then wait in a bounded queue
  for one of the route's workers; a request whose client has gone while it waited is dropped
  instead of run (a browser that gave up must not cost the next visitor minutes).
* errors are JSON ``{"error": {"status", "code", "message", "request_id"}}``: no traceback, no
  version, and no absolute path (:func:`public_text` cuts paths to their last part).
* uploads: the type is decided by the first bytes (:func:`sniff_type`, 415 otherwise) and the pixel
  count read from the header before decoding (:func:`decode_image`, 422 over ``max_pixels``).

:func:`bind` opens the listening socket before anything is printed, so a port in use is one
``cnnlab: error:`` line, not a URL followed by uvicorn's errno. This is the only module that
starts uvicorn.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import uuid
import warnings
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image
from starlette.exceptions import HTTPException

from cnnlab.data.images import ImageReadError
from cnnlab.errors import CnnlabError

REQUEST_ID = "cnnlab.request_id"  # scope key
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
KEEP_ALIVE_S = 5  # idle keep-alive connections are closed after this


@dataclass
class ServeSettings:
    """Limits of the server; every field is a ``cnnlab serve`` flag (most are ``cnnlab explain`` flags too)."""

    max_body_bytes: int = 8 * 1024 * 1024  # whole request body
    max_pixels: int = 16_000_000  # per image, checked from the header (Pillow's own limit is 89,478,485)
    max_request_pixels: int = 32_000_000  # decoded pixels per request (all files of a batch together)
    max_total_pixels: int = 64_000_000  # decoded pixels of all requests being decoded or queued; beyond that 503
    max_concurrency: int = 4  # requests decoding / waiting for inference at once
    max_queue: int = 64  # further uploaded requests allowed to wait for a slot; beyond that 503
    max_requests: int = 256  # work requests in progress (uploading, queued or running); beyond that 503
    read_timeout_s: float = 10.0  # longest wait for the next bytes of a request's headers or body
    min_body_rate: float = 1024.0  # bytes/s a body must average once it has taken longer than read_timeout_s
    max_files: int = 64  # images per /predict/batch request
    max_topk: int = 100
    batch_window_ms: float = 0.0  # micro-batching: wait this long to group requests (0 = off)
    max_batch: int = 32  # largest micro-batch
    threads: int | None = None  # inference threads of torch, ONNX Runtime and OpenVINO (None: their default)
    device: str = "cpu"
    trust_torchscript: bool = False  # serve a TorchScript file (it is code; see cnnlab.serve.predictor)
    model_name: str | None = None  # NAME in the v2 routes (None: from the model's folder, see serve.v2)


# ---- errors ----------------------------------------------------------------------------------------
class ApiError(HTTPException):
    """An HTTP error with a machine-readable code; Starlette's handlers turn it into our JSON."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code


BUSY = {"retry-after": "1"}
_STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    503: "unavailable",
}
# an absolute POSIX path (not preceded by a word character, so "bytes/s" or "3/4" are left alone)
_ABS_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s'\"`,;:()\[\]{}<>/]+/)+([^\s'\"`,;:()\[\]{}<>/]*)")


def public_text(text: str) -> str:
    """``text`` with every absolute path cut to its last part: answers never reveal where files live."""
    return _ABS_PATH.sub(lambda m: m.group(1) or "<folder>", text)


def error_body(status: int, code: str, message: str, request_id: str, path: str = "") -> dict[str, Any]:
    message = public_text(message)
    if path == "/v2" or path.startswith("/v2/models/"):  # the Open Inference Protocol's shape: error is the message
        return {"error": message, "code": code, "status": status, "request_id": request_id}
    return {"error": {"status": status, "code": code, "message": message, "request_id": request_id}}


def request_id_of(request: Request) -> str:
    return request.scope.get(REQUEST_ID, "-")


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = getattr(exc, "code", None) or _STATUS_CODES.get(exc.status_code, "error")
    body = error_body(exc.status_code, code, str(exc.detail), request_id_of(request), request.url.path)
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # name the field and the problem, never echo the input back
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
    body = error_body(422, "invalid_request", "; ".join(parts), request_id_of(request), request.url.path)
    return JSONResponse(body, status_code=422)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        error_body(
            500,
            "internal_error",
            "internal error; quote the request id when reporting it",
            request_id_of(request),
            request.url.path,
        ),
        status_code=500,
        headers={"x-request-id": request_id_of(request)},  # sent outside Guard (by Starlette's error middleware)
    )


class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(413, "too_large", f"request body over the limit of {limit:,} bytes")


class SlowClient(ApiError):
    """The body stalled or trickled: 408, and the connection is closed (the rest is never read)."""

    def __init__(self, message: str):
        super().__init__(408, "timeout", message, headers={"connection": "close"})


class ClientGone(ApiError):
    """The client closed its connection while its request waited: the work is dropped, nobody reads this."""

    def __init__(self):
        super().__init__(499, "client_gone", "the client closed the connection before its turn")


# ---- pixel budget and bounded queues ---------------------------------------------------------------
class PixelBudget:
    """Decoded pixels of all requests being decoded or queued, over every surface of one process."""

    def __init__(self, total: int):
        self.total, self.used = total, 0


class Admission:
    """One route's queue: requests waiting for or holding one of ``concurrency`` workers, and their pixels."""

    def __init__(
        self,
        settings: ServeSettings,
        budget: PixelBudget | None = None,
        concurrency: int | None = None,
        queue: int | None = None,
    ):
        self.settings = settings
        self.budget = budget or PixelBudget(settings.max_total_pixels)
        self.concurrency = max(1, concurrency or settings.max_concurrency)
        self.queue = settings.max_queue if queue is None else queue
        self._gate: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.waiting = 0  # requests queued or holding a worker

    @property
    def pixels(self) -> int:
        return self.budget.used

    @property
    def full(self) -> bool:
        """No room for another request in the queue (Guard then refuses before reading the body)."""
        return self.waiting >= self.concurrency + self.queue

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()  # one per event loop (a test client may start several)
        if self._gate is None or self._loop is not loop:
            self._gate, self._loop = asyncio.Semaphore(self.concurrency), loop
        return self._gate

    @asynccontextmanager
    async def slot(self, pixels: int, request: Request | None = None):
        """Wait for a worker for ``pixels`` decoded pixels, or refuse: 413 for one request over its budget,
        503 + Retry-After when the queue or the shared pixel budget is full. With ``request``, a client
        that disconnects while waiting has its work dropped (:class:`ClientGone`)."""
        s, budget = self.settings, self.budget
        if pixels > s.max_request_pixels:
            raise ApiError(
                413,
                "too_many_pixels",
                f"the images decode to {pixels:,} pixels in all, over the limit of "
                f"{s.max_request_pixels:,} per request; send fewer or smaller images",
            )
        if self.full:
            raise ApiError(503, "busy", "the server is at its request limit; retry shortly", headers=BUSY)
        if budget.used + pixels > budget.total:
            raise ApiError(503, "busy", "the server is decoding its limit of pixels; retry shortly", headers=BUSY)
        self.waiting, budget.used = self.waiting + 1, budget.used + pixels
        gate = self._semaphore()
        try:
            await _acquire_unless_gone(gate, request)
            try:
                yield
            finally:
                gate.release()
        finally:
            self.waiting, budget.used = self.waiting - 1, budget.used - pixels


async def _acquire_unless_gone(gate: asyncio.Semaphore, request: Request | None) -> None:
    """Acquire ``gate``; if the client disconnects first, raise :class:`ClientGone` without holding it."""
    if request is None or not gate.locked():
        await gate.acquire()
        return
    acquire = asyncio.ensure_future(gate.acquire())
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({acquire, gone}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this request was cancelled itself: hold nothing
        gone.cancel()
        if acquire.done() and not acquire.cancelled():
            gate.release()
        acquire.cancel()
        raise
    gone.cancel()
    if acquire not in done:
        acquire.cancel()  # a wake-up it already got is passed on to the next waiter by the semaphore
        raise ClientGone()


async def _disconnected(request: Request) -> None:
    """Return when the client has closed the connection (its body has been read: the next message is that)."""
    try:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    except Exception:  # noqa: BLE001 - a broken receive channel means the client is gone too
        return


# ---- the ASGI guard --------------------------------------------------------------------------------
class Limits:
    """What :class:`Guard` knows about the app: the routes that do work, and their queues."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.budget = PixelBudget(settings.max_total_pixels)
        self.routes: list[tuple[str, Admission]] = []
        self.in_flight = 0  # work requests admitted and not yet answered

    def route(self, prefix: str, admission: Admission) -> Admission:
        """POSTs to paths starting with ``prefix`` are counted and refused early when ``admission`` is full."""
        self.routes.append((prefix, admission))
        return admission

    def admission_for(self, method: str, path: str) -> Admission | None:
        if method != "POST":
            return None
        return next((a for prefix, a in self.routes if path.startswith(prefix)), None)


class Guard:
    """Request ids, the body-size limit, slow-upload cut-off and the work-request limit, in front of an app."""

    def __init__(self, app, settings: ServeSettings, limits: Limits):
        self.app, self.settings, self.limits = app, settings, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        client_id = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = client_id if _CLIENT_ID.match(client_id) else uuid.uuid4().hex
        scope[REQUEST_ID] = rid

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        limit = self.settings.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            body = error_body(400, "bad_request", "the Content-Length header is not a number", rid, scope["path"])
            return await _send_json(send_with_id, 400, body)
        if length is not None and int(length) > limit:
            body = error_body(413, "too_large", _too_large(length, limit), rid, scope["path"])
            return await _send_json(send_with_id, 413, body)
        admission = self.limits.admission_for(scope["method"], scope["path"])
        work = admission is not None
        if work and (self.limits.in_flight >= self.settings.max_requests or admission.full):
            # Refused before the body is parsed (cheap under a burst). Keep-alive: the server reads and
            # drops the body, so the client gets this answer, not a reset on its next request.
            body = error_body(503, "busy", "the server is at its request limit; retry shortly", rid, scope["path"])
            return await _send_json(send_with_id, 503, body, [(b"retry-after", b"1")], close=False)
        self.limits.in_flight += work
        try:
            await self.app(scope, _BodyReader(receive, self.settings).receive, send_with_id)
        finally:
            self.limits.in_flight -= work


class _BodyReader:
    """``receive`` with the size limit, the per-read timeout and the minimum average body rate."""

    def __init__(self, receive, settings: ServeSettings):
        self.inner, self.settings = receive, settings
        self.received, self.done = 0, False
        self.start = asyncio.get_running_loop().time()

    async def receive(self):
        if self.done:  # body complete: a disconnect listener may wait as long as it likes
            return await self.inner()
        s = self.settings
        try:
            message = await asyncio.wait_for(self.inner(), s.read_timeout_s)
        except asyncio.TimeoutError:
            self.done = True
            raise SlowClient(f"no request data for {s.read_timeout_s:g} s; the connection is closed") from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > s.max_body_bytes:
                self.done = True
                raise BodyTooLarge(s.max_body_bytes)  # handled by the app's HTTPException handler -> 413
            elapsed = asyncio.get_running_loop().time() - self.start
            if not self.done and elapsed > s.read_timeout_s and self.received < s.min_body_rate * elapsed:
                self.done = True
                raise SlowClient(
                    f"the body arrives at {self.received / elapsed:.0f} bytes/s, under the minimum of "
                    f"{s.min_body_rate:.0f}; the connection is closed"
                )
        return message


def _too_large(length: bytes, limit: int) -> str:
    return f"request body of {length.decode('latin-1')} bytes is over the limit of {limit:,} bytes"


async def _send_json(send, status: int, body: dict, extra: list | None = None, close: bool = True) -> None:
    raw = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()), *(extra or [])]
    if close:  # the body will not be read (too large, or its length unknown): end the connection after this
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


def hardened_app(title: str, settings: ServeSettings, *, limits: Limits | None = None, **fastapi_kw) -> FastAPI:
    """A FastAPI app with the JSON error handlers and, unless ``limits`` belongs to a host app that it
    will be mounted in (whose :class:`Guard` already covers it), its own :class:`Guard`.
    ``app.state.limits`` is where routes register their queues."""
    app = FastAPI(title=title, version="1", docs_url=None, redoc_url=None, **fastapi_kw)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)
    if limits is None:
        limits = Limits(settings)
        app.add_middleware(Guard, settings=settings, limits=limits)
    app.state.limits = limits
    return app


# ---- upload checks ---------------------------------------------------------------------------------
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


def sniff_type(data: bytes) -> str | None:
    """The image type named by the file's first bytes, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((kind for magic, kind in _MAGIC if data.startswith(magic)), None)


def _describe(data: bytes) -> str:
    head = data[:256].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    if head.startswith(b"<"):
        return "XML/SVG"
    if head.startswith(b"%pdf"):
        return "PDF"
    return "not a supported image format"


def decode_image(load, data: bytes, name: str) -> np.ndarray:
    """Bytes -> the decoded float (H, W, C) array by ``load(data, name=name)``, or ApiError 415/422 (never
    anything else). ``load`` is a :class:`~cnnlab.serve.predictor.Predictor`'s, which caps the pixels."""
    if not data:
        raise ApiError(422, "empty", f"{name}: the upload is empty (0 bytes)")
    kind = sniff_type(data)
    if kind is None:
        raise ApiError(
            415, "unsupported_type", f"{name}: {_describe(data)}; send PNG, JPEG, GIF, BMP, WebP or TIFF (by content)"
        )
    try:
        return load(data, name=name)
    except ImageReadError as exc:
        # the magic bytes named an image type, so a failure now means damaged data, not a wrong type
        code = {"too_large": "too_many_pixels", "truncated": "truncated", "empty": "empty"}.get(exc.kind, "undecodable")
        raise ApiError(422, code, f"{name}: {exc.reason}") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the upload's fault, not a 500
        raise ApiError(
            422, "undecodable", f"{name}: the {kind} data cannot be decoded ({type(exc).__name__})"
        ) from None


def header_pixels(data: bytes, max_pixels: int) -> int:
    """Pixels the upload would decode to, from its header alone (0 when the header cannot be read, or
    when the image is over the per-image cap: then decoding refuses it without decoding anything)."""
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as im:
            warnings.simplefilter("ignore")
            pixels = im.width * im.height
    except Exception:  # noqa: BLE001 - Pillow's bomb error, unknown formats...: decode_image reports them
        return 0
    return pixels if pixels <= max_pixels else 0


def safe_name(upload: UploadFile) -> str:
    return Path(upload.filename or "upload").name[:200] or "upload"


# ---- the server ------------------------------------------------------------------------------------
def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port``, or one clear error (port in use, unknown host, no rights)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as exc:
        raise CnnlabError(f"cannot bind to {host}: {getattr(exc, 'strerror', None) or exc}; check --host") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart reuses a port in TIME_WAIT
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == 98 or "in use" in str(exc):
            raise CnnlabError(
                f"port {port} on {host} is already in use; stop what listens there or choose another with --port"
            ) from None
        raise CnnlabError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port") from None
    sock.set_inheritable(True)
    return sock


def uvicorn_server(app, settings: ServeSettings, log_level: str = "warning", backlog: int = 2048):
    """The uvicorn server every surface runs on: the header deadline protocol, the keep-alive timeout,
    no ``Server`` header. Start it with ``.run(sockets=[bind(...)])``."""
    import uvicorn

    from cnnlab.serve.slow_clients import protocol_class

    config = uvicorn.Config(
        app,
        log_level=log_level,
        server_header=False,  # no software versions in responses
        timeout_keep_alive=KEEP_ALIVE_S,
        backlog=backlog,
        http=protocol_class(settings.read_timeout_s),
    )
    return uvicorn.Server(config)


def run_server(app, sock: socket.socket, settings: ServeSettings, log_level: str = "info") -> None:
    """Serve ``app`` on the bound ``sock`` until interrupted (SIGINT/SIGTERM end it cleanly)."""
    uvicorn_server(app, settings, log_level).run(sockets=[sock])


__all__ = [
    "Admission",
    "ApiError",
    "ClientGone",
    "Guard",
    "Limits",
    "PixelBudget",
    "ServeSettings",
    "bind",
    "decode_image",
    "hardened_app",
    "header_pixels",
    "public_text",
    "run_server",
    "safe_name",
    "sniff_type",
    "uvicorn_server",
]
