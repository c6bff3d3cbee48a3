"""Prediction-server load test: a real ``cnnlab serve`` on 127.0.0.1 vs the bare model at the same batch.

The server runs in its own process (``python -m cnnlab.cli.main serve``, one torch thread); this
process is the client: C keep-alive HTTP/1.1 connections (asyncio, raw sockets, so the client costs
little CPU) send N multipart PNG uploads to ``POST /predict`` and time each one. The bare figure is
what the server does per request without HTTP — decode the same PNG bytes, preprocess, forward at
batch 1, top-k — measured in this process with the same thread count; also the forward pass alone.
The ratio server req/s / bare img/s is the server's efficiency (overhead = 1 - ratio; the issue's
target is overhead <= 20%). Runs with micro-batching add a row (the bare figure stays batch 1 there).
Loopback only, bounded in count and time.

Run:  python benchmarks/bench_serve.py [MODEL] [--arch seed_cnn --input 1x28x28] [--requests 2000]
      [--concurrency 16] [--threads 1] [--batch-window-ms 0 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from _server import start_cnnlab  # noqa: E402 - benchmarks/ is on sys.path when run as a script

BOUNDARY = "cnnlab-bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_bytes(png: bytes, port: int) -> bytes:
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    head = (
        f"POST /predict?topk=5 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(v) for k, _, v in (ln.partition(":") for ln in lines[1:]) if k.lower() == "content-length")
    await reader.readexactly(length)
    return status


async def load(port: int, payload: bytes, total: int, concurrency: int, deadline: float) -> tuple[list, list]:
    latencies: list[float] = []
    statuses: list[int] = []
    remaining = [total]

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while remaining[0] > 0 and time.monotonic() < deadline:
                remaining[0] -= 1
                t = time.perf_counter()
                writer.write(payload)
                statuses.append(await read_response(reader))
                latencies.append(time.perf_counter() - t)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses


def start_server(model: Path, port: int, threads: int, window_ms: float, concurrency: int) -> subprocess.Popen:
    args = ["serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--threads", str(threads)]
    args += ["--batch-window-ms", str(window_ms), "--log-level", "warning"]
    return start_cnnlab(
        [*args, "--max-concurrency", str(concurrency), "--max-queue", str(4 * concurrency)], "/ready", threads
    )


def bare(predictor, png: bytes, n: int) -> tuple[float, float]:
    """(images/s of decode + preprocess + forward + top-k at batch 1, images/s of the forward alone)."""
    predictor.predict(png)
    t = time.perf_counter()
    for _ in range(n):
        predictor.predict(png, topk=5)
    full = n / (time.perf_counter() - t)
    x = predictor.preprocess([predictor.load(png)])
    t = time.perf_counter()
    for _ in range(n):
        predictor.probabilities(x)
    return full, n / (time.perf_counter() - t)


def run_server(model: Path, png: bytes, window: float, args) -> tuple:
    """One load run against a fresh server: (window, requests, errors, p50 ms, p99 ms, requests/s)."""
    port = free_port()
    proc = start_server(model, port, args.threads, window, args.concurrency)
    try:
        payload = request_bytes(png, port)
        asyncio.run(load(port, payload, 50, 4, time.monotonic() + 30))  # warm-up
        t = time.perf_counter()
        lat, statuses = asyncio.run(
            load(port, payload, args.requests, args.concurrency, time.monotonic() + args.max_seconds)
        )
        wall = time.perf_counter() - t
    finally:
        proc.terminate()
        proc.wait(10)
    errors = sum(st != 200 for st in statuses)
    q = np.percentile(np.array(lat) * 1000, [50, 99])
    return window, len(statuses), errors, q[0], q[1], len(statuses) / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="run or model folder (default: random weights for --arch)")
    ap.add_argument("--arch", default="seed_cnn")
    ap.add_argument("--input", default="1x28x28")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-window-ms", type=float, nargs="+", default=[0.0, 2.0])
    ap.add_argument("--max-seconds", type=float, default=180, help="stop a load run after this long")
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_inference import build_model
    from PIL import Image

    from cnnlab.serve.predictor import Predictor

    torch.set_num_threads(args.threads)
    shape = [int(v) for v in args.input.split("x")]
    model = Path(args.model) if args.model else build_model(args.arch, shape, Path(tempfile.mkdtemp()))
    predictor = Predictor(model)
    c, s = predictor.channels, predictor.size
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (s, s, 3) if c == 3 else (s, s), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    png = buf.getvalue()
    bare_full, bare_forward = bare(predictor, png, 300)

    rows = [run_server(model, png, window, args) for window in args.batch_window_ms]

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\n{predictor.meta['architecture']} {'x'.join(map(str, predictor.input_shape))}, torch threads "
        f"{args.threads}, concurrency {args.concurrency}, {os.cpu_count()} CPUs shared with the client, {when}"
    )
    print(
        f"bare model, batch 1: {bare_full:,.0f} img/s decode+preprocess+forward+top-k, "
        f"{bare_forward:,.0f} img/s forward only"
    )
    print(
        f"{'micro-batch window':>18} {'requests':>9} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7} {'req/s':>7} "
        f"{'vs bare':>8} {'overhead':>8}"
    )
    for window, n, errors, p50, p99, rps in rows:
        ratio = rps / bare_full
        print(
            f"{window:>16} ms {n:>9} {errors:>6} {p50:>7.2f} {p99:>7.2f} {rps:>7.0f} {ratio:>7.2f}x {1 - ratio:>8.0%}"
        )
    print(json.dumps({"bare_img_s": bare_full, "forward_img_s": bare_forward, "runs": rows}))


if __name__ == "__main__":
    main()
