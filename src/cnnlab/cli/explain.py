"""``cnnlab explain RUN``: a local web page that shows the run's network at work, unit by unit.

Loads the model first (a wrong path or a non-torch model fails here, with the usual message),
then serves :func:`cnnlab.explain.app.create_explain_app` with uvicorn on localhost. The page is
self-contained (no CDN), so it works offline.
"""

from __future__ import annotations

from cnnlab.cli._options import add_device, run_path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="explain a trained network in the browser: every layer, the arithmetic of any unit",
        description="Serve an offline page showing the model of RUN (a run or model folder) at work: the "
        "preprocessing, every layer's activation maps, the arithmetic behind any unit you click, the softmax, "
        "Grad-CAM and saliency. Bound to 127.0.0.1 unless --host says otherwise.",
    )
    p.add_argument(
        "run",
        metavar="RUN",
        type=run_path,
        help="run folder or model folder of a torch model (or demo:mnist, the trained model shipped with cnnlab)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8001, help="port (default 8001)")
    p.add_argument("--max-body-mb", type=float, default=8.0, help="upload size limit in MB (default 8)")
    p.add_argument("--max-pixels", type=int, default=16_000_000, help="pixel limit per image (default 16,000,000)")
    p.add_argument("--max-queue", type=int, default=16, help="requests allowed to wait; more get 503 (default 16)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    add_device(p)
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.errors import CnnlabError

    try:
        import uvicorn

        from cnnlab.explain.app import create_explain_app
        from cnnlab.explain.explainer import Explainer
        from cnnlab.serve.app import ServeSettings
    except ImportError:
        raise CnnlabError("explain needs the 'serve' extra: pip install 'cnnlab[serve]'") from None
    if args.max_pixels < 1 or args.max_queue < 0 or args.max_body_mb <= 0:
        raise CnnlabError("--max-pixels must be at least 1, --max-queue >= 0 and --max-body-mb > 0")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    settings = ServeSettings(
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
        max_queue=args.max_queue,
        device=args.device,
    )
    from cnnlab.devices import resolve_device

    explainer = Explainer(args.run, device=str(resolve_device(args.device)), max_pixels=args.max_pixels)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"cnnlab: serving on {args.host}: reachable from other machines; there is no authentication")
    print(
        f"cnnlab: explainer for {explainer.predictor.meta.get('architecture', 'the model')} at "
        f"http://{args.host}:{args.port}/"
    )
    uvicorn.run(
        create_explain_app(explainer, settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        server_header=False,
        timeout_keep_alive=5,
    )
    return 0
