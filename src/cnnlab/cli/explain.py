"""``cnnlab explain RUN``: a local web page that shows the run's network at work, unit by unit.

Loads the model first (a wrong path or a non-torch model fails here, with the usual message),
then serves :func:`cnnlab.explain.app.create_explain_app` on the server set-up every cnnlab web
command shares (:mod:`cnnlab.serve.server`: the same limits, timeouts and flags as ``cnnlab
serve``), on localhost. The page is self-contained (no CDN), so it works offline.
"""

from __future__ import annotations

from cnnlab.cli._options import add_device, run_path
from cnnlab.cli._server import add_server_flags, settings_from_args, start


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
    add_server_flags(p, port=8001, max_queue=16, concurrency=False)
    p.add_argument(
        "--no-test-images",
        action="store_true",
        help="show uploaded images only, not the run's test images (e.g. with --host on a shared network)",
    )
    add_device(p)
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.errors import CnnlabError

    try:
        from cnnlab.explain.app import create_explain_app
        from cnnlab.explain.explainer import Explainer
    except ImportError:
        raise CnnlabError("explain needs the 'serve' extra: pip install 'cnnlab[serve]'") from None
    settings = settings_from_args(args)
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    from cnnlab.devices import resolve_device

    device = str(resolve_device(args.device))
    explainer = Explainer(args.run, device=device, max_pixels=settings.max_pixels, test_images=not args.no_test_images)
    app = create_explain_app(explainer, settings)
    architecture = explainer.predictor.meta.get("architecture", "the model")
    return start(app, args, settings, [f"explainer for {architecture} at " + "{url}"])
