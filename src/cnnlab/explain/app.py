"""The explainer's web app: one offline page and JSON endpoints, with the prediction server's hardening.

Routes (relative to where the app is mounted: ``/`` for ``cnnlab explain``, ``/explain/`` inside
``cnnlab serve``):

* ``GET /`` the page (``static/explain.html``: plain JS, no external script, style or font);
* ``GET api/model`` classes, input shape, normalisation and every layer (shape, parameters, RF);
* ``GET api/samples`` the run's first test images with their true labels;
* ``POST api/analyse`` (multipart ``file``) or ``POST api/analyse/sample?index=I``: the image through
  the model, every layer's maps, softmax; ``GET api/unit`` the arithmetic of one unit;
  ``GET api/attribution`` Grad-CAM or saliency for a chosen class.

The limits are :class:`cnnlab.serve.app.ServeSettings`'s and the pieces are the server's own:
:class:`~cnnlab.serve.app.Guard` (request ids, body size before reading), :func:`decode_upload`
(type by magic bytes, pixel count from the header before decoding), and JSON errors with no
traceback. Work runs on one thread; past ``max_concurrency + max_queue`` requests in flight the
answer is 503.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from threading import Lock
from typing import Annotated, Any

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException

from cnnlab.data.images import ImageReadError
from cnnlab.errors import CnnlabError
from cnnlab.explain.explainer import Explainer, NotHookable
from cnnlab.serve.app import (
    ApiError,
    Guard,
    ServeSettings,
    decode_upload,
    http_error,
    internal_error,
    request_id_of,
    safe_name,
    validation_error,
)


def explain_page() -> str:
    """The page, shipped in cnnlab/explain/static/ (self-contained HTML)."""
    return resources.files("cnnlab.explain").joinpath("static", "explain.html").read_text(encoding="utf-8")


class _State:
    """The explainer (loaded on first use when mounted inside ``cnnlab serve``), its thread and its load."""

    def __init__(self, model: str | Path | Explainer, settings: ServeSettings):
        self.settings = settings
        self.explainer = model if isinstance(model, Explainer) else None
        self.path = None if isinstance(model, Explainer) else model
        self.failed: str | None = None
        self.lock = Lock()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnlab-explain")
        self.in_flight = 0

    def get(self) -> Explainer:
        """The explainer; loads it (once) on the worker thread."""
        with self.lock:
            if self.explainer is None and self.failed is None:
                try:
                    self.explainer = Explainer(self.path, self.settings.device, self.settings.max_pixels)
                except NotHookable:
                    self.failed = "an exported or NumPy-engine model has no torch layers to hook"
                except CnnlabError as exc:  # says what is wrong (NaN weights, bad metadata): keep it, minus the path
                    self.failed = str(exc).replace(str(self.path), Path(self.path).name)
                except Exception as exc:  # noqa: BLE001 - the message may hold a path; name the type only
                    self.failed = type(exc).__name__
            if self.explainer is None:
                raise ApiError(503, "not_ready", f"the model failed to load ({self.failed})")
            return self.explainer

    async def run(self, fn, *args) -> Any:
        """``fn(explainer, *args)`` on the worker thread; 503 when too many requests wait already."""
        limit = self.settings.max_concurrency + self.settings.max_queue
        if self.in_flight >= limit:
            raise ApiError(503, "busy", "the server is at its request limit; retry shortly", {"retry-after": "1"})
        self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, self._call, fn, args)
        finally:
            self.in_flight -= 1

    def _call(self, fn, args) -> Any:
        explainer = self.get()
        try:
            return fn(explainer, *args)
        except KeyError:
            raise ApiError(404, "expired", "that analysis is no longer kept; analyse the image again") from None
        except ImageReadError as exc:  # a test image on disk that cannot be read
            raise ApiError(422, "undecodable", f"{Path(exc.path).name}: {exc.reason}") from None
        except CnnlabError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None


def create_explain_app(
    model: str | Path | Explainer, settings: ServeSettings | None = None, *, guard: bool = True
) -> FastAPI:
    """The explainer app for a run or model folder (or a loaded :class:`Explainer`).

    ``guard=False`` leaves out the request-id and body-size middleware, for mounting inside an app
    that has it already (:func:`mount_explain`).
    """
    settings = settings or ServeSettings()
    state = _State(model, settings)
    app = FastAPI(title="cnnlab explain", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)
    if guard:
        app.add_middleware(Guard, settings=settings)
    app.state.explain = state
    _add_routes(app, state)
    return app


def mount_explain(app: FastAPI, model_path: str | Path, settings: ServeSettings, prefix: str = "/explain") -> None:
    """Serve the explainer at ``prefix`` inside ``app`` (``cnnlab serve``); the model loads on first use."""
    app.mount(prefix, create_explain_app(model_path, settings, guard=False))


def _add_routes(app: FastAPI, state: _State) -> None:
    OneFile = Annotated[UploadFile, File(description="an image file: PNG, JPEG, GIF, BMP, WebP or TIFF")]
    TopK = Annotated[int, Query(ge=1, le=state.settings.max_topk)]
    Id = Annotated[str, Query(min_length=1, max_length=64, pattern="^[0-9a-f]+$")]
    Index = Annotated[int, Query(ge=0, le=1_000_000)]

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(explain_page())

    @app.get("/api/model")
    async def model_info() -> dict:
        return await state.run(lambda e: e.model_info())

    @app.get("/api/samples")
    async def samples() -> dict:
        return await state.run(_samples_json)

    @app.post("/api/analyse")
    async def analyse(request: Request, file: OneFile, topk: TopK = 5) -> dict:
        name, data = safe_name(file), await file.read()

        def work(e: Explainer) -> dict:
            # the server's checks and error mapping (type by content, pixels from the header: 415/422);
            # then the decoded (H, W, C) array itself, which the page shows step by step
            decode_upload(e.predictor, data, name)
            arr = e.predictor.load(data, name=name)
            return e.analysis_json(e.analyse(arr), topk)

        return {"request_id": request_id_of(request), "filename": name, **(await state.run(work))}

    @app.post("/api/analyse/sample")
    async def analyse_sample(request: Request, index: Index, topk: TopK = 5) -> dict:
        def work(e: Explainer) -> dict:
            items, note = e.samples()
            if index >= len(items):
                raise CnnlabError(f"test image {index} does not exist; {len(items)} are shown. {note}".strip())
            sample = items[index]
            return e.analysis_json(e.analyse(e.predictor.load(sample.load()), sample.label), topk)

        return {"request_id": request_id_of(request), **(await state.run(work))}

    @app.get("/api/unit")
    async def unit(id: Id, layer: Index, c: Index, y: Index = 0, x: Index = 0) -> dict:
        return await state.run(lambda e: e.unit_json(e.get(id), layer, c, y, x))

    @app.get("/api/attribution")
    async def attribution(id: Id, method: str = "gradcam", target: Index | None = None) -> dict:
        return await state.run(lambda e: e.attribution_json(e.get(id), method, target))


def _samples_json(e: Explainer) -> dict[str, Any]:
    from cnnlab.explain.explainer import png_data_url

    items, note = e.samples()
    rows = []
    for i, s in enumerate(items):
        arr = e.predictor.load(s.load())
        rows.append({"index": i, "id": s.id, "label": s.label, "name": e.class_name(s.label)})
        rows[-1]["png"] = png_data_url(arr)
    return {"samples": rows, "note": note}


__all__ = ["create_explain_app", "mount_explain", "explain_page"]
