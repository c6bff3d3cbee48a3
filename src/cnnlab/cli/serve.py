"""``cnnlab serve MODEL``: the hardened prediction server (FastAPI + uvicorn), on localhost by default.

Routes: ``POST /predict``, ``POST /predict/batch``, ``GET /health``, ``GET /ready`` (and their KServe v2
names ``/v2/health/live``, ``/v2/health/ready``), ``GET /model``, ``GET /docs`` (OpenAPI) and ``GET /``
(an upload page). A deployed model hands out predictions only: the interactive explainer is mounted at
``/explain/`` with ``--explain`` (uploaded images only), and shows the run's test images only with
``--explain-test-images`` as well. The model (and the explainer's copy) is loaded and warmed up before
the port is bound: a model that cannot be loaded, gives NaN or the wrong number of outputs, or cannot
be explained when ``--explain`` asks for it, ends the command with one error line, as does a port in
use. Limits are flags (shared with ``cnnlab explain``); see :mod:`cnnlab.serve.server`.
"""

from __future__ import annotations

from cnnlab.cli._options import add_device, run_path
from cnnlab.cli._server import add_server_flags, settings_from_args, start


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a trained model over HTTP (upload page, JSON API)",
        description="Serve a model (run folder, model folder or exported .onnx file) with FastAPI + uvicorn. "
        "Bound to 127.0.0.1 unless --host says otherwise. Open http://HOST:PORT/ for the upload page, /docs for "
        "the API.",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        type=run_path,
        help="run or model folder, an exported .onnx or OpenVINO .xml file, or demo:mnist (shipped with cnnlab)",
    )
    add_server_flags(p, port=8000, max_queue=64)
    p.add_argument("--max-files", type=int, default=64, help="images per /predict/batch request (default 64)")
    p.add_argument(
        "--batch-window-ms", type=float, default=0.0, help="micro-batching: group requests arriving within this time"
    )
    p.add_argument("--max-batch", type=int, default=32, help="largest micro-batch (default 32)")
    add_device(p, " (.onnx, .xml files and NumPy-engine runs run on the CPU)")
    p.add_argument(
        "--trust-torchscript",
        action="store_true",
        help="allow a TorchScript .pt file: it is a program and runs with your rights (prefer .onnx)",
    )
    p.add_argument(
        "--model-name",
        metavar="NAME",
        help="the model's name in the KServe v2 routes /v2/models/NAME/... (default: the run folder's name)",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="also serve the interactive explainer at /explain/ for uploaded images (run or model folders of "
        "torch models only)",
    )
    p.add_argument(
        "--explain-test-images",
        action="store_true",
        help="let the explainer show the run's test images and their file names too (implies --explain)",
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.errors import CnnlabError

    try:
        from cnnlab.serve.app import create_app
    except ImportError:
        raise CnnlabError("serving needs the 'serve' extra: pip install 'cnnlab[serve]'") from None
    from cnnlab.serve.predictor import Predictor

    settings = settings_from_args(args)
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    # Load and warm up before binding the port: a broken model is an error now, not a server never ready.
    predictor = Predictor(
        args.model,
        device=settings.device,
        max_pixels=settings.max_pixels,
        trust_torchscript=settings.trust_torchscript,
        threads=settings.threads,  # ONNX Runtime's and OpenVINO's too, not only torch's
    )
    app = create_app(predictor, settings)
    lines = ["upload page at {url}  (API docs at {url}docs)"]
    if args.explain or args.explain_test_images:
        _mount_explainer(app, args, settings)
        shown = "uploads and the run's test images" if args.explain_test_images else "uploaded images only"
        lines.append("explainer at {url}explain/  (" + shown + ")")
    return start(app, args, settings, lines)


def _mount_explainer(app, args, settings) -> None:
    """The explainer of the same model at /explain/, loaded now: a model it cannot hook is an error."""
    from cnnlab.devices import resolve_device
    from cnnlab.errors import CnnlabError
    from cnnlab.explain.app import mount_explain
    from cnnlab.explain.explainer import Explainer, NotHookable

    try:
        explainer = Explainer(
            args.model,
            device=str(resolve_device(settings.device)),
            max_pixels=settings.max_pixels,
            test_images=args.explain_test_images,
        )
    except NotHookable as exc:
        raise CnnlabError(f"--explain: {exc}; or serve without --explain") from None
    mount_explain(app, explainer, settings)
