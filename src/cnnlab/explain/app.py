"""The explainer's web app: one offline page and JSON endpoints, on the prediction server's own set-up.

Routes (relative to where the app is mounted: ``/`` for ``cnnlab explain``, ``/explain/`` inside
``cnnlab serve --explain``):

* ``GET /`` the page (``static/explain.html``: plain JS, no external script, style or font);
* ``GET api/model`` classes, input shape, normalisation and every layer (shape, parameters, RF),
  and ``test_images``: whether the run's test images are shown;
* ``GET api/samples`` the run's test images with their true labels (none, with a note, when the
  owner did not share them);
* ``POST api/analyse`` (multipart ``file``) or ``POST api/analyse/sample?index=I``: the image through
  the model, every layer's maps, softmax; ``GET api/unit`` the arithmetic of one unit;
  ``GET api/attribution`` Grad-CAM or saliency for a chosen class.

The app is built by :func:`cnnlab.serve.server.hardened_app`, so it has everything the prediction
server has: header and body timeouts, minimum body rate, body-size limit, request ids, JSON errors
without traceback or path. All work runs on one thread behind an
:class:`~cnnlab.serve.server.Admission` queue of its own (``max_queue`` waiting, then 503 +
``Retry-After``, refused before the body is read) with its own pixel budget (read from the upload's
header before decoding), so the explainer can neither starve predictions nor pile up work: a
request whose client has gone is dropped before it runs. Standalone, the app has its own
:class:`~cnnlab.serve.server.Guard`; mounted (:func:`mount_explain`), it registers its queue with
the host's.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from threading import Lock
from typing import Annotated, Any

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.responses import HTMLResponse

from cnnlab.data.images import ImageReadError
from cnnlab.errors import CnnlabError
from cnnlab.explain.explainer import Explainer, NotHookable, png_data_url, thumbnail
from cnnlab.serve.server import (
    Admission,
    ApiError,
    ClientGone,
    Limits,
    PixelBudget,
    ServeSettings,
    decode_image,
    hardened_app,
    header_pixels,
    public_text,
    request_id_of,
    safe_name,
)


def explain_page() -> str:
    """The page, shipped in cnnlab/explain/static/ (self-contained HTML)."""
    return resources.files("cnnlab.explain").joinpath("static", "explain.html").read_text(encoding="utf-8")


class _State:
    """The explainer (loaded on first use when given a path), its one worker thread and its queue."""

    def __init__(self, model: str | Path | Explainer, settings: ServeSettings, test_images: bool):
        self.settings, self.test_images = settings, test_images
        self.explainer = model if isinstance(model, Explainer) else None
        self.path = None if isinstance(model, Explainer) else model
        self.failed: str | None = None
        self.lock = Lock()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnlab-explain")
        # one worker; its own pixel budget, so explanations never take the predictions' share
        self.admission = Admission(settings, PixelBudget(settings.max_total_pixels), concurrency=1)
        self.samples: dict[str, Any] | None = None

    def get(self) -> Explainer:
        """The explainer; loads it (once) on the worker thread."""
        with self.lock:
            if self.explainer is None and self.failed is None:
                try:
                    s = self.settings
                    self.explainer = Explainer(self.path, s.device, s.max_pixels, test_images=self.test_images)
                except NotHookable:
                    self.failed = "an exported or NumPy-engine model has no torch layers to hook"
                except CnnlabError as exc:  # says what is wrong (NaN weights, bad metadata): keep it, minus paths
                    self.failed = public_text(str(exc))
                except Exception as exc:  # noqa: BLE001 - the message may hold a path; name the type only
                    self.failed = type(exc).__name__
            if self.explainer is None:
                raise ApiError(503, "not_ready", f"the model failed to load ({self.failed})")
            return self.explainer

    async def run(self, request: Request, fn, *args, pixels: int = 0) -> Any:
        """``fn(explainer, *args)`` on the worker thread, after the queue admits it; dropped when the
        client has gone before its turn."""
        async with self.admission.slot(pixels, request):
            if await request.is_disconnected():
                raise ClientGone()
            return await asyncio.get_running_loop().run_in_executor(self.executor, self._call, fn, args)

    def samples_json(self, e: Explainer) -> dict[str, Any]:
        """The test-image strip, made once: small display copies, so a folder of large photos costs a few KB
        per request instead of 24 decodes and full-size PNGs each time."""
        if self.samples is None:
            items, note = e.samples()
            rows = []
            for i, s in enumerate(items):
                shown = thumbnail(e.predictor.load(s.load()))
                rows.append({"index": i, "id": s.id, "label": s.label, "name": e.class_name(s.label)})
                rows[-1]["png"] = png_data_url(shown)
            self.samples = {"samples": rows, "note": public_text(note)}  # a note may quote an error naming a folder
        return self.samples

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
    model: str | Path | Explainer,
    settings: ServeSettings | None = None,
    *,
    limits: Limits | None = None,
    prefix: str = "",
    test_images: bool = True,
) -> FastAPI:
    """The explainer app for a run or model folder (or a loaded :class:`Explainer`).

    ``limits`` and ``prefix``: the host app's :class:`~cnnlab.serve.server.Limits` and the path it
    mounts this app at (:func:`mount_explain`); its Guard then covers this app. ``test_images=False``
    shows uploads only (a loaded Explainer keeps its own setting).
    """
    settings = settings or ServeSettings()
    state = _State(model, settings, test_images)
    app = hardened_app("cnnlab explain", settings, limits=limits, openapi_url=None)
    app.state.limits.route(f"{prefix}/api/analyse", state.admission)  # refused before the body when full
    app.state.explain = state
    _add_routes(app, state)
    return app


def mount_explain(
    app: FastAPI, model_path: str | Path | Explainer, settings: ServeSettings, *, test_images: bool = False
) -> None:
    """Serve the explainer at ``/explain`` inside ``app`` (``cnnlab serve --explain``), behind the host's
    Guard; uploads only unless ``test_images``. A path is loaded on first use."""
    sub = create_explain_app(model_path, settings, limits=app.state.limits, prefix="/explain", test_images=test_images)
    app.mount("/explain", sub)


def _add_routes(app: FastAPI, state: _State) -> None:
    OneFile = Annotated[UploadFile, File(description="an image file: PNG, JPEG, GIF, BMP, WebP or TIFF")]
    TopK = Annotated[int, Query(ge=1, le=state.settings.max_topk)]
    Id = Annotated[str, Query(min_length=1, max_length=64, pattern="^[0-9a-f]+$")]
    Index = Annotated[int, Query(ge=0, le=1_000_000)]

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(explain_page())

    @app.get("/api/model")
    async def model_info(request: Request) -> dict:
        return await state.run(request, lambda e: {**e.model_info(), "test_images": e.test_images})

    @app.get("/api/samples")
    async def samples(request: Request) -> dict:
        return await state.run(request, state.samples_json)

    @app.post("/api/analyse")
    async def analyse(request: Request, file: OneFile, topk: TopK = 5) -> dict:
        name, data = safe_name(file), await file.read()

        def work(e: Explainer) -> dict:
            # the server's checks and error mapping (type by content, pixels capped from the header: 415/422),
            # then the decoded (H, W, C) array, which the page shows step by step
            return e.analysis_json(e.analyse(decode_image(e.predictor.load, data, name)), topk)

        out = await state.run(request, work, pixels=header_pixels(data, state.settings.max_pixels))
        return {"request_id": request_id_of(request), "filename": name, **out}

    @app.post("/api/analyse/sample")
    async def analyse_sample(request: Request, index: Index, topk: TopK = 5) -> dict:
        def work(e: Explainer) -> dict:
            items, note = e.samples()
            if not e.test_images:
                raise ApiError(404, "no_test_images", note)
            if index >= len(items):
                raise CnnlabError(f"test image {index} does not exist; {len(items)} are shown. {note}".strip())
            sample = items[index]
            return e.analysis_json(e.analyse(e.predictor.load(sample.load()), sample.label), topk)

        return {"request_id": request_id_of(request), **(await state.run(request, work))}

    @app.get("/api/unit")
    async def unit(request: Request, id: Id, layer: Index, c: Index, y: Index = 0, x: Index = 0) -> dict:
        return await state.run(request, lambda e: e.unit_json(e.get(id), layer, c, y, x))

    @app.get("/api/attribution")
    async def attribution(request: Request, id: Id, method: str = "gradcam", target: Index | None = None) -> dict:
        return await state.run(request, lambda e: e.attribution_json(e.get(id), method, target))


__all__ = ["create_explain_app", "mount_explain", "explain_page"]
