"""``cnnlab serve MODEL``: the hardened prediction server (FastAPI + uvicorn), on localhost by default.

Routes: ``POST /predict``, ``POST /predict/batch``, ``GET /health``, ``GET /ready``, ``GET /model``,
``GET /docs`` (OpenAPI) and ``GET /`` (an upload page). Limits are flags; see
:mod:`cnnlab.serve.app` for what each protects against.
"""

from __future__ import annotations

from cnnlab.cli._options import add_device


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a trained model over HTTP (upload page, JSON API)",
        description="Serve a model (run folder or model folder) with FastAPI + uvicorn. Bound to 127.0.0.1 "
        "unless --host says otherwise. Open http://HOST:PORT/ for the upload page, /docs for the API.",
    )
    p.add_argument("model", metavar="MODEL", help="run or model folder, or a .onnx / TorchScript .pt file")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-body-mb", type=float, default=8.0, help="request body limit in MB (default 8)")
    p.add_argument("--max-pixels", type=int, default=16_000_000, help="pixel limit per image (default 16,000,000)")
    p.add_argument("--max-concurrency", type=int, default=4, help="requests processed at once (default 4)")
    p.add_argument("--max-queue", type=int, default=64, help="requests allowed to wait; more get 503 (default 64)")
    p.add_argument("--max-files", type=int, default=64, help="images per /predict/batch request (default 64)")
    p.add_argument(
        "--batch-window-ms", type=float, default=0.0, help="micro-batching: group requests arriving within this time"
    )
    p.add_argument("--max-batch", type=int, default=32, help="largest micro-batch (default 32)")
    p.add_argument("--threads", type=int, help="torch threads for inference (default: torch's choice)")
    add_device(p, " (.onnx files and NumPy-engine runs run on the CPU)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.errors import CnnlabError
    from cnnlab.runs.model_file import read_meta

    try:
        import uvicorn

        from cnnlab.serve.app import ServeSettings, create_app
    except ImportError:
        raise CnnlabError("serving needs the 'serve' extra: pip install 'cnnlab[serve]'") from None
    for flag in ("max_concurrency", "max_files", "max_batch", "max_pixels"):
        if getattr(args, flag) < 1:
            raise CnnlabError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.max_queue < 0 or args.max_body_mb <= 0:
        raise CnnlabError("--max-queue must be >= 0 and --max-body-mb > 0")
    read_meta(args.model)  # a wrong path fails here, with the usual message, before the server starts
    settings = ServeSettings(
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        max_files=args.max_files,
        batch_window_ms=args.batch_window_ms,
        max_batch=args.max_batch,
        threads=args.threads,
        device=args.device,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"cnnlab: serving on {args.host}: reachable from other machines; there is no authentication")
    print(f"cnnlab: upload page at http://{args.host}:{args.port}/  (API docs at /docs)")
    uvicorn.run(
        create_app(args.model, settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        server_header=False,  # no software versions in responses
        timeout_keep_alive=5,
    )
    return 0
