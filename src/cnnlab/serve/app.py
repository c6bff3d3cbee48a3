"""The prediction server: FastAPI routes around :class:`~cnnlab.serve.predictor.Predictor`, hardened.

Seed 002 (step 10, "REST API") sketches a Flask route that unpickles a model and feeds it the raw
upload. A server that faces real clients must also survive them: the app is built on
:mod:`cnnlab.serve.server`, the set-up shared by every cnnlab web surface (header and body
timeouts, minimum body rate, body-size limit, request ids, a bounded queue answering 503 +
``Retry-After``, the shared pixel budget read from image headers, abandoned requests dropped, JSON
errors without traceback, path or version). Here:

* every prediction route (``/predict``, ``/predict/batch`` and the KServe v2 routes under
  ``/v2/models/``) goes through one :class:`~cnnlab.serve.server.Admission` queue of
  ``max_concurrency`` decode slots and ``max_queue`` waiting requests;
* the upload's type is decided by its first bytes (PNG, JPEG, GIF, BMP, WebP, TIFF), never its name
  (415 otherwise); decoding is guarded and capped at ``max_pixels`` (default 16 M, below Pillow's
  89 M), read from the header before any pixel is decoded, so a decompression bomb costs
  milliseconds (422); nothing a client sends can produce a 500;
* ``/model`` shows metadata without paths, versions or the training config;
* optional micro-batching (:class:`MicroBatcher`) groups concurrent single-image requests into one
  forward pass; inference runs on one dedicated thread (torch parallelises inside the op).

``/health`` and ``/v2/health/live`` answer while the process runs; ``/ready`` and
``/v2/health/ready`` (KServe v2 names) answer 503 until the model is loaded and a warm-up inference
has given finite outputs of the right size. ``cnnlab serve`` loads and warms the model before it
binds the port, so a broken model ends the command with an error instead of a server that is never
ready.
"""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import torch
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from cnnlab.errors import CnnlabError
from cnnlab.serve.predictor import Predictor
from cnnlab.serve.server import (  # noqa: F401 - re-exported: the server's pieces were first defined here
    Admission,
    ApiError,
    Guard,
    ServeSettings,
    decode_image,
    error_body,
    hardened_app,
    header_pixels,
    http_error,
    internal_error,
    request_id_of,
    safe_name,
    sniff_type,
    validation_error,
)
from cnnlab.serve.v2 import add_v2_routes, served_name

_PREDICT_ROUTES = ("/predict", "/v2/models/")  # POST prefixes whose work goes through the prediction queue


def decode_upload(predictor: Predictor, data: bytes, name: str) -> torch.Tensor:
    """Bytes -> normalised (C, S, S) tensor, or ApiError 415/422 (never anything else)."""
    return predictor.preprocess([decode_image(predictor.load, data, name)])[0]


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
    state: dict[str, Any] = {"predictor": None, "batcher": None, "failed": None}

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
                    threads=settings.threads,  # ONNX Runtime's and OpenVINO's too, not only torch's
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
        state.update(predictor=None, batcher=None, failed=None)
        loading = asyncio.get_running_loop().run_in_executor(executor, load, executor)
        if isinstance(model, Predictor):
            await loading  # already loaded: ready before the first request
        yield
        await loading
        if state["batcher"] is not None:
            state["batcher"].close()
        executor.shutdown(wait=False, cancel_futures=True)

    app = hardened_app(
        "cnnlab prediction server",  # version "1" is the API's, not a library version
        settings,
        description="Image classification with a model trained by cnnlab. POST an image to /predict.",
        lifespan=lifespan,  # /docs is our offline page: FastAPI's Swagger UI and ReDoc load from a CDN
    )
    state["admission"] = _prediction_queue(app, settings)
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


def _prediction_queue(app: FastAPI, settings: ServeSettings) -> Admission:
    """One queue for every prediction route (KServe v2 included), registered with the app's Guard."""
    admission = Admission(settings, app.state.limits.budget)
    for prefix in _PREDICT_ROUTES:
        app.state.limits.route(prefix, admission)
    return admission


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
        async with state["admission"].slot(header_pixels(data, settings.max_pixels), request):
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
        async with state["admission"].slot(pixels, request):
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
