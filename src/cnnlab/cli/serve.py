"""``cnnlab serve MODEL``: the hardened prediction server (FastAPI + uvicorn), on localhost by default.

Routes: ``POST /predict``, ``POST /predict/batch``, ``GET /health``, ``GET /ready`` (and their KServe v2
names ``/v2/health/live``, ``/v2/health/ready``), ``GET /model``, ``GET /docs`` (OpenAPI) and ``GET /``
(an upload page). The model is loaded and warmed up before the port is bound: a model that cannot be
loaded, or gives NaN or the wrong number of outputs, ends the command with one error line. Limits
are flags; see :mod:`cnnlab.serve.app` for what each protects against.
"""

from __future__ import annotations

from cnnlab.cli._options import add_device, run_path


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
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-body-mb", type=float, default=8.0, help="request body limit in MB (default 8)")
    p.add_argument("--max-pixels", type=int, default=16_000_000, help="pixel limit per image (default 16,000,000)")
    p.add_argument(
        "--max-request-pixels",
        type=int,
        default=32_000_000,
        help="decoded pixels per request, all files together (default 32,000,000); more get 413",
    )
    p.add_argument(
        "--max-total-pixels",
        type=int,
        default=64_000_000,
        help="decoded pixels of all requests in progress (default 64,000,000); more get 503",
    )
    p.add_argument("--max-concurrency", type=int, default=4, help="requests processed at once (default 4)")
    p.add_argument("--max-queue", type=int, default=64, help="requests allowed to wait; more get 503 (default 64)")
    p.add_argument(
        "--max-requests", type=int, default=256, help="prediction requests in progress at once; more get 503"
    )
    p.add_argument(
        "--read-timeout", type=float, default=10.0, help="seconds a request's headers or body may stall (default 10)"
    )
    p.add_argument("--min-body-rate", type=float, default=1024.0, help="bytes/s an upload must average (default 1024)")
    p.add_argument("--max-files", type=int, default=64, help="images per /predict/batch request (default 64)")
    p.add_argument(
        "--batch-window-ms", type=float, default=0.0, help="micro-batching: group requests arriving within this time"
    )
    p.add_argument("--max-batch", type=int, default=32, help="largest micro-batch (default 32)")
    p.add_argument("--threads", type=int, help="torch threads for inference (default: torch's choice)")
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
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def settings_from_args(args):
    """The ServeSettings the flags ask for, after checking their ranges."""
    from cnnlab.errors import CnnlabError
    from cnnlab.serve.app import ServeSettings

    for flag in ("max_concurrency", "max_files", "max_batch", "max_pixels", "max_requests"):
        if getattr(args, flag) < 1:
            raise CnnlabError(f"--{flag.replace('_', '-')} must be at least 1")
    for flag in ("max_request_pixels", "max_total_pixels"):
        if getattr(args, flag) < args.max_pixels:
            raise CnnlabError(f"--{flag.replace('_', '-')} must be at least --max-pixels ({args.max_pixels:,})")
    if args.max_queue < 0 or args.max_body_mb <= 0:
        raise CnnlabError("--max-queue must be >= 0 and --max-body-mb > 0")
    if args.read_timeout <= 0 or args.min_body_rate < 0:
        raise CnnlabError("--read-timeout must be > 0 and --min-body-rate >= 0")
    return ServeSettings(
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
        max_request_pixels=args.max_request_pixels,
        max_total_pixels=args.max_total_pixels,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        max_requests=args.max_requests,
        read_timeout_s=args.read_timeout,
        min_body_rate=args.min_body_rate,
        max_files=args.max_files,
        batch_window_ms=args.batch_window_ms,
        max_batch=args.max_batch,
        threads=args.threads,
        device=args.device,
        trust_torchscript=args.trust_torchscript,
        model_name=args.model_name,
    )


def run(args) -> int:
    from cnnlab.errors import CnnlabError

    try:
        import uvicorn

        from cnnlab.explain.app import mount_explain
        from cnnlab.serve.app import create_app
        from cnnlab.serve.slow_clients import protocol_class
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
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"cnnlab: serving on {args.host}: reachable from other machines; there is no authentication")
    print(f"cnnlab: upload page at http://{args.host}:{args.port}/  (API docs at /docs, explainer at /explain/)")
    app = create_app(predictor, settings)
    mount_explain(app, args.model, settings)  # /explain/: the interactive explainer of the same model
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        server_header=False,  # no software versions in responses
        timeout_keep_alive=5,
        http=protocol_class(settings.read_timeout_s),
    )
    return 0
