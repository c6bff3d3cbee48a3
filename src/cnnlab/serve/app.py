"""The prediction server: FastAPI routes around :class:`~cnnlab.serve.predictor.Predictor`, hardened.

Seed 002 (step 10, "REST API") sketches a Flask route that unpickles a model and feeds it the raw
upload. A server that faces real clients must also survive them, so every request passes through:

* the connection protocol (:mod:`cnnlab.serve.slow_clients`): a connection that does not finish its
  request headers within ``read_timeout_s`` is closed.
* :class:`Guard` (pure ASGI, outermost of ours): gives each request an id (``X-Request-ID``),
  refuses bodies over the limit (default 8 MB) with 413 — from ``Content-Length`` before reading
  anything, and by counting streamed bytes for chunked uploads — cuts uploads that stall for
  ``read_timeout_s`` or average under ``min_body_rate`` bytes/s (408, connection closed), and
  answers 503 + ``Retry-After`` when ``max_requests`` prediction requests are already in progress
  (uploading, queued or running) or the decode queue below is full, before the body is parsed.
  A 503 leaves the connection open, so the unread body is drained by the server instead of the
  socket being reset under the client.
* :class:`Admission`, once a body is in: the decoded-pixel count of every upload is read from its
  header (no pixel decoded) and checked against ``max_request_pixels`` per request (413) and
  ``max_total_pixels`` over all requests being decoded or queued (503); more than
  ``max_concurrency + max_queue`` requests waiting for a decode slot also get 503.
* the upload's type is decided by its first bytes (PNG, JPEG, GIF, BMP, WebP, TIFF), never its name
  (415 otherwise); decoding is guarded and capped at ``max_pixels`` (default 16 M, below Pillow's
  89 M), read from the header before any pixel is decoded, so a decompression bomb costs
  milliseconds (422); nothing a client sends can produce a 500.
* errors are JSON ``{"error": {"status", "code", "message", "request_id"}}`` with no traceback,
  path or version; ``/model`` shows metadata without paths, versions or the training config.
* optional micro-batching (:class:`MicroBatcher`) groups concurrent single-image requests into one
  forward pass; inference runs on one dedicated thread (torch parallelises inside the op).

``/health`` and ``/v2/health/live`` answer while the process runs; ``/ready`` and
``/v2/health/ready`` (KServe v2 names) answer 503 until the model is loaded and a warm-up inference
has given finite outputs of the right size. ``cnnlab serve`` loads and warms the model before it
binds the port, so a broken model ends the command with an error instead of a server that is never
ready.
"""

import asyncio
import io
import json
import logging
import re
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import torch
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from cnnlab.data.images import ImageReadError
from cnnlab.errors import CnnlabError
from cnnlab.serve.predictor import Predictor
from cnnlab.serve.v2 import add_v2_routes, served_name

REQUEST_ID = "cnnlab.request_id"  # scope key
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# prediction requests (counted against max_requests, refused early when the queue is full): ours and v2 infer
_PREDICT_PATH = re.compile(r"/predict(/batch)?|/v2/models/[^/]+(/versions/[^/]+)?/infer")


@dataclass
class ServeSettings:
    """Limits of the server; every field is a ``cnnlab serve`` flag."""

    max_body_bytes: int = 8 * 1024 * 1024  # whole request body
    max_pixels: int = 16_000_000  # per image, checked from the header (Pillow's own limit is 89,478,485)
    max_request_pixels: int = 32_000_000  # decoded pixels per request (all files of a batch together)
    max_total_pixels: int = 64_000_000  # decoded pixels of all requests being decoded or queued; beyond that 503
    max_concurrency: int = 4  # requests decoding / waiting for inference at once
    max_queue: int = 64  # further uploaded requests allowed to wait for a slot; beyond that 503
    max_requests: int = 256  # prediction requests in progress (uploading, queued or running); beyond that 503
    read_timeout_s: float = 10.0  # longest wait for the next bytes of a request's headers or body
    min_body_rate: float = 1024.0  # bytes/s a body must average once it has taken longer than read_timeout_s
    max_files: int = 64  # images per /predict/batch request
    max_topk: int = 100
    batch_window_ms: float = 0.0  # micro-batching: wait this long to group requests (0 = off)
    max_batch: int = 32  # largest micro-batch
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    device: str = "cpu"
    trust_torchscript: bool = False  # serve a TorchScript file (it is code; see cnnlab.serve.predictor)
    model_name: str | None = None  # NAME in the v2 routes (None: from the model's folder, see serve.v2)


# ---- errors ----------------------------------------------------------------------------------------
class ApiError(HTTPException):
    """An HTTP error with a machine-readable code; Starlette's handlers turn it into our JSON."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code


_STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    503: "unavailable",
}


def error_body(status: int, code: str, message: str, request_id: str, path: str = "") -> dict[str, Any]:
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


# ---- the ASGI guard --------------------------------------------------------------------------------
class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(413, "too_large", f"request body over the limit of {limit:,} bytes")


class SlowClient(ApiError):
    """The body stalled or trickled: 408, and the connection is closed (the rest is never read)."""

    def __init__(self, message: str):
        super().__init__(408, "timeout", message, headers={"connection": "close"})


class Guard:
    """Request ids, the body-size limit, slow-upload cut-off and the upload limit, in front of the FastAPI app."""

    def __init__(self, app, settings: ServeSettings, state: dict | None = None):
        self.app, self.settings, self.state = app, settings, state or {}
        self.in_flight = 0  # prediction requests admitted and not yet answered

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
        is_predict = scope["method"] == "POST" and _PREDICT_PATH.fullmatch(scope["path"]) is not None
        admission = self.state.get("admission")
        queue_full = admission is not None and admission.full
        if is_predict and (self.in_flight >= self.settings.max_requests or queue_full):
            # Refused before the body is parsed (cheap under a burst). Keep-alive: the server reads and
            # drops the body, so the client gets this answer, not a reset on its next request.
            body = error_body(503, "busy", "the server is at its request limit; retry shortly", rid, scope["path"])
            return await _send_json(send_with_id, 503, body, [(b"retry-after", b"1")], close=False)
        self.in_flight += is_predict
        try:
            await self.app(scope, _BodyReader(receive, self.settings).receive, send_with_id)
        finally:
            self.in_flight -= is_predict


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


def decode_upload(predictor: Predictor, data: bytes, name: str) -> torch.Tensor:
    """Bytes -> normalised (C, S, S) tensor, or ApiError 415/422 (never anything else)."""
    if not data:
        raise ApiError(422, "empty", f"{name}: the upload is empty (0 bytes)")
    kind = sniff_type(data)
    if kind is None:
        raise ApiError(
            415, "unsupported_type", f"{name}: {_describe(data)}; send PNG, JPEG, GIF, BMP, WebP or TIFF (by content)"
        )
    try:
        arr = predictor.load(data, name=name)
        return predictor.preprocess([arr])[0]
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
    except Exception:  # noqa: BLE001 - Pillow's bomb error, unknown formats...: decode_upload reports them
        return 0
    return pixels if pixels <= max_pixels else 0


class Admission:
    """Requests waiting for or holding a decode slot, and the decoded pixels they may create."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.gate = asyncio.Semaphore(max(1, settings.max_concurrency))
        self.waiting = 0  # requests queued or decoding/inferring
        self.pixels = 0  # header pixel count of their uploads

    @property
    def full(self) -> bool:
        """No room for another request in the queue (Guard then refuses before reading the body)."""
        return self.waiting >= self.settings.max_concurrency + self.settings.max_queue

    @asynccontextmanager
    async def slot(self, pixels: int):
        """Wait for a decode slot for ``pixels`` decoded pixels, or refuse: 413 for one request over its
        budget, 503 + Retry-After when the queue or the shared pixel budget is full."""
        s, busy = self.settings, {"retry-after": "1"}
        if pixels > s.max_request_pixels:
            raise ApiError(
                413,
                "too_many_pixels",
                f"the images decode to {pixels:,} pixels in all, over the limit of "
                f"{s.max_request_pixels:,} per request; send fewer or smaller images",
            )
        if self.full:
            raise ApiError(503, "busy", "the server is at its request limit; retry shortly", headers=busy)
        if self.pixels + pixels > s.max_total_pixels:
            raise ApiError(503, "busy", "the server is decoding its limit of pixels; retry shortly", headers=busy)
        self.waiting, self.pixels = self.waiting + 1, self.pixels + pixels
        try:
            async with self.gate:
                yield
        finally:
            self.waiting, self.pixels = self.waiting - 1, self.pixels - pixels


def safe_name(upload: UploadFile) -> str:
    return Path(upload.filename or "upload").name[:200] or "upload"


# ---- micro-batching --------------------------------------------------------------------------------
class MicroBatcher:
    """Run single-image requests through the model, grouping those that arrive within a short window."""

    def __init__(self, predictor: Predictor, executor: ThreadPoolExecutor, max_batch: int, window_ms: float):
        self.predictor, self.executor = predictor, executor
        self.max_batch, self.window = max(1, max_batch), max(0.0, window_ms) / 1000
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    async def run_batch(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> probabilities (B, K) on the inference thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.predictor.probabilities, x)

    async def submit(self, x: torch.Tensor) -> torch.Tensor:
        """(C, S, S) -> probabilities (K,)."""
        if self.window <= 0:
            return (await self.run_batch(x[None]))[0]
        if self.task is None:
            self.queue = asyncio.Queue()
            self.task = asyncio.create_task(self._loop())
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((x, fut))
        return await fut

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.window
            while len(items) < self.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            try:
                probs = await self.run_batch(torch.stack([x for x, _ in items]))
                for i, (_, fut) in enumerate(items):
                    if not fut.done():
                        fut.set_result(probs[i])
            except Exception as exc:  # noqa: BLE001 - hand the failure to every waiting request
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()


# ---- the app ---------------------------------------------------------------------------------------
def static_page(name: str) -> str:
    """A page shipped in cnnlab/serve/static/ (self-contained HTML: no external scripts or styles)."""
    return resources.files("cnnlab.serve").joinpath("static", name).read_text(encoding="utf-8")


def create_app(model: str | Path | Predictor, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app serving ``model``: a path (loaded and warmed up in the background at start-up;
    a failure is logged and keeps ``/ready`` at 503) or a :class:`Predictor` already loaded."""
    settings = settings or ServeSettings()
    state: dict[str, Any] = {"predictor": None, "batcher": None, "failed": None, "admission": None}

    def load(executor: ThreadPoolExecutor) -> None:
        try:
            if settings.threads:
                torch.set_num_threads(settings.threads)
            predictor = model
            if not isinstance(predictor, Predictor):
                predictor = Predictor(
                    model,
                    device=settings.device,
                    max_pixels=settings.max_pixels,
                    trust_torchscript=settings.trust_torchscript,
                )
            predictor.warm_up()
            state["batcher"] = MicroBatcher(predictor, executor, settings.max_batch, settings.batch_window_ms)
            state["predictor"] = predictor
        except Exception as exc:  # noqa: BLE001 - /ready reports that it failed; the log says why
            state["failed"] = type(exc).__name__
            reason = str(exc) if isinstance(exc, CnnlabError) else f"{type(exc).__name__}: {exc}"
            logging.getLogger("uvicorn.error").error("cnnlab: the model cannot be served: %s", reason)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Created here, inside the server's event loop; one thread runs every forward pass.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnlab-infer")
        state.update(predictor=None, batcher=None, failed=None, admission=Admission(settings))
        loading = asyncio.get_running_loop().run_in_executor(executor, load, executor)
        if isinstance(model, Predictor):
            await loading  # already loaded: ready before the first request
        yield
        await loading
        if state["batcher"] is not None:
            state["batcher"].close()
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="cnnlab prediction server",
        version="1",  # the API's version, not a library version
        description="Image classification with a model trained by cnnlab. POST an image to /predict.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's Swagger UI and ReDoc load from a CDN; /docs is our offline page
        redoc_url=None,
    )
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)
    app.add_middleware(Guard, settings=settings, state=state)
    app.state.cnnlab = state

    def ready_predictor() -> Predictor:
        if state["predictor"] is None:
            msg = "model failed to load" if state["failed"] else "model is loading"
            raise ApiError(503, "not_ready", msg, headers={"retry-after": "1"})
        return state["predictor"]

    _add_routes(app, settings, state, ready_predictor)
    name = served_name(model.source if isinstance(model, Predictor) else model, settings.model_name)
    add_v2_routes(app, settings, state, ready_predictor, name, decode_upload, header_pixels)  # KServe v2 / Triton
    return app


def _add_routes(app: FastAPI, settings: ServeSettings, state: dict, ready_predictor) -> None:
    TopK = Annotated[int, Query(ge=1, le=settings.max_topk, description="how many classes to return")]
    OneFile = Annotated[UploadFile, File(description="an image file: PNG, JPEG, GIF, BMP, WebP or TIFF")]
    ManyFiles = Annotated[list[UploadFile], File(description="image files (repeat the field)")]

    # Documented in /openapi.json (and so on /docs): every error is {"error": {status, code, message, request_id}}.
    errors = {
        408: {"description": "the upload stalled or arrived too slowly; the connection is closed"},
        413: {"description": "body over the size limit, too many files (batch), or too many decoded pixels"},
        415: {"description": "not an image by content (PNG, JPEG, GIF, BMP, WebP or TIFF)"},
        422: {"description": "empty, damaged or oversized (pixel count) image, or a bad parameter"},
        503: {"description": "model not loaded yet, too many requests or pixels queued (retry after Retry-After)"},
    }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(static_page("index.html"))

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(static_page("docs.html"))

    @app.get("/health", summary="liveness: the process answers")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v2/health/live", summary="liveness, KServe v2 name")
    async def v2_live() -> dict:
        return {"live": True}

    not_ready = {503: {"description": "the model is still loading, or failed to load"}}

    @app.get("/ready", summary="readiness: model loaded and warm-up inference passed", responses=not_ready)
    async def ready() -> dict:
        ready_predictor()
        return {"status": "ready"}

    @app.get("/v2/health/ready", summary="readiness, KServe v2 name", responses=not_ready)
    async def v2_ready() -> dict:
        ready_predictor()
        return {"ready": True}

    @app.get(
        "/model",
        summary="model metadata: architecture, classes, input shape, preprocessing, metrics",
        responses=not_ready,
    )
    async def model_info() -> dict:
        return ready_predictor().public_meta()

    @app.post("/predict", summary="top-k classes of one image (multipart field 'file')", responses=errors)
    async def predict(request: Request, file: OneFile, topk: TopK = 5) -> dict:
        predictor = ready_predictor()
        name, data = safe_name(file), await file.read()
        async with state["admission"].slot(header_pixels(data, settings.max_pixels)):
            x = await run_in_threadpool(decode_upload, predictor, data, name)  # (C, S, S)
            probs = await state["batcher"].submit(x)  # (K,)
        return {"request_id": request_id_of(request), "filename": name, **predictor.format(probs[None], topk)[0]}

    @app.post(
        "/predict/batch",
        summary="top-k classes of several images (multipart fields 'files'); a bad file gets its own error",
        responses=errors,
    )
    async def predict_batch(request: Request, files: ManyFiles, topk: TopK = 5) -> dict:
        predictor = ready_predictor()
        if len(files) > settings.max_files:
            raise ApiError(413, "too_many_files", f"{len(files)} files; at most {settings.max_files} per request")
        results: list[dict[str, Any]] = []
        good: list[tuple[int, torch.Tensor]] = []
        uploads = [(safe_name(upload), await upload.read()) for upload in files]
        pixels = sum(header_pixels(data, settings.max_pixels) for _, data in uploads)
        async with state["admission"].slot(pixels):
            for name, data in uploads:
                try:
                    good.append((len(results), await run_in_threadpool(decode_upload, predictor, data, name)))
                    results.append({"filename": name})
                except ApiError as exc:
                    err = {"status": exc.status_code, "code": exc.code, "message": exc.detail}
                    results.append({"filename": name, "error": err})
            if good:
                probs = await state["batcher"].run_batch(torch.stack([x for _, x in good]))
                for (i, _), row in zip(good, predictor.format(probs, topk)):
                    results[i].update(row)
        return {"request_id": request_id_of(request), "results": results}


__all__ = [
    "create_app",
    "ServeSettings",
    "Guard",
    "Admission",
    "MicroBatcher",
    "sniff_type",
    "decode_upload",
    "header_pixels",
]
