"""The flags and start-up every cnnlab web command shares (``serve``, ``explain``): one set of limits, one start.

Each limit of :class:`cnnlab.serve.server.ServeSettings` is a flag spelt the same way in every
command, with the same default (only the port and the queue length differ). :func:`start` binds the
port before printing anything, so a port in use or an unknown host is one ``cnnlab: error:`` line,
then prints where the server answers and runs it until Ctrl-C.
"""

from __future__ import annotations

from cnnlab.errors import CnnlabError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_server_flags(p, *, port: int, max_queue: int, concurrency: bool = True) -> None:
    """``--host``, ``--port`` and every request limit. ``concurrency=False`` leaves out
    ``--max-concurrency`` (a command with one worker)."""
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=port, help=f"port (default {port})")
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
    if concurrency:
        p.add_argument("--max-concurrency", type=int, default=4, help="requests processed at once (default 4)")
    p.add_argument(
        "--max-queue", type=int, default=max_queue, help=f"requests allowed to wait; more get 503 (default {max_queue})"
    )
    p.add_argument("--max-requests", type=int, default=256, help="work requests in progress at once; more get 503")
    p.add_argument(
        "--read-timeout", type=float, default=10.0, help="seconds a request's headers or body may stall (default 10)"
    )
    p.add_argument("--min-body-rate", type=float, default=1024.0, help="bytes/s an upload must average (default 1024)")
    p.add_argument("--threads", type=int, help="inference threads: torch, ONNX Runtime, OpenVINO (default: theirs)")


def settings_from_args(args):
    """The ServeSettings the flags ask for, after checking their ranges (flags a command lacks keep defaults)."""
    from cnnlab.serve.server import ServeSettings

    defaults = ServeSettings()
    get = lambda flag: getattr(args, flag, getattr(defaults, flag, None))  # noqa: E731
    for flag in ("max_concurrency", "max_files", "max_batch", "max_pixels", "max_requests"):
        if get(flag) < 1:
            raise CnnlabError(f"--{flag.replace('_', '-')} must be at least 1")
    for flag in ("max_request_pixels", "max_total_pixels"):
        if get(flag) < args.max_pixels:
            raise CnnlabError(f"--{flag.replace('_', '-')} must be at least --max-pixels ({args.max_pixels:,})")
    if args.max_queue < 0 or args.max_body_mb <= 0:
        raise CnnlabError("--max-queue must be >= 0 and --max-body-mb > 0")
    if args.read_timeout <= 0 or args.min_body_rate < 0:
        raise CnnlabError("--read-timeout must be > 0 and --min-body-rate >= 0")
    if args.threads is not None and args.threads < 1:
        raise CnnlabError("--threads must be at least 1")
    return ServeSettings(
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
        max_request_pixels=args.max_request_pixels,
        max_total_pixels=args.max_total_pixels,
        max_concurrency=get("max_concurrency"),
        max_queue=args.max_queue,
        max_requests=args.max_requests,
        read_timeout_s=args.read_timeout,
        min_body_rate=args.min_body_rate,
        max_files=get("max_files"),
        batch_window_ms=get("batch_window_ms"),
        max_batch=get("max_batch"),
        threads=args.threads,
        device=args.device,
        trust_torchscript=get("trust_torchscript"),
        model_name=get("model_name"),
    )


def start(app, args, settings, lines: list[str]) -> int:
    """Bind ``args.host:args.port`` (a port in use is a CnnlabError, before anything is printed), print
    ``lines`` with ``{url}`` replaced by the server's address, then serve ``app`` until interrupted."""
    from cnnlab.serve.server import bind, run_server

    sock = bind(args.host, args.port)
    try:
        port = sock.getsockname()[1]  # --port 0: the one the system chose
        host = f"[{args.host}]" if ":" in args.host else args.host
        if args.host not in LOCAL_HOSTS:
            print(f"cnnlab: serving on {args.host}: reachable from other machines; there is no authentication")
        for line in lines:
            print("cnnlab: " + line.replace("{url}", f"http://{host}:{port}/"), flush=True)
        run_server(app, sock, settings, args.log_level)
    finally:
        sock.close()
    return 0


__all__ = ["add_server_flags", "settings_from_args", "start"]
