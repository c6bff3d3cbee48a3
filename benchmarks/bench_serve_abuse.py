"""Hostile-but-fair load against a real ``cnnlab serve`` on 127.0.0.1: slow clients, a burst, decode amplification.

The server runs in its own process with its default limits (one torch thread); this process is the
client (asyncio, raw sockets). Three scenarios, each against a fresh server, each bounded in time:

1. **slow clients**: ``--slow`` connections (64) send their headers, then one body byte per second,
   and reconnect whenever the server cuts them; meanwhile 4 ordinary keep-alive clients send PNG
   uploads to ``/predict``. Reported: the ordinary requests' p50/p99 and errors (and the same
   without the slow connections, as the baseline), and how many slow connections were cut.
2. **burst**: ``--burst-requests`` (2,000) uploads over ``--burst-concurrency`` (200) keep-alive
   connections at once. Reported: 200s, 503s (each must carry ``Retry-After``), errors (resets,
   closed connections) and the p99 latency.
3. **decode amplification**: 4 concurrent ``/predict/batch`` requests of 64 small PNGs that each
   decode to 4000x4000 (16 M pixels), repeated, while 4 ordinary clients run. Reported: the
   batches' statuses, the ordinary p99, and the server's peak RSS (VmHWM) before and after.

Run:  python benchmarks/bench_serve_abuse.py [--seconds 20] [--slow 64] [--burst-requests 2000]
      [--burst-concurrency 200]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shlex
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from _server import start_cnnlab  # noqa: E402 - benchmarks/ is on sys.path when run as a script

BOUNDARY = "cnnlab-bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(files: list[tuple[str, bytes]], field: str) -> bytes:
    parts = [
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def zero_png(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG of zeros: a few KB on disk, width*height pixels decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"\x00" * (height * (1 + (width + 7) // 8))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    await reader.readexactly(int(headers.get("content-length", 0)))
    return int(lines[0].split()[1]), headers


async def ordinary(port: int, payload: bytes, until: float, out: dict) -> None:
    """One keep-alive client sending ``payload`` until ``until``; latencies and statuses into ``out``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < until:
            t = time.perf_counter()
            writer.write(payload)
            try:
                status, _ = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError):
                out["errors"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            out["lat"].append(time.perf_counter() - t)
            out["status"].append(status)
    finally:
        writer.close()


async def slow_client(port: int, payload: bytes, until: float, out: dict) -> None:
    """The headers of ``payload``, then its body one byte per second; reconnect whenever the server cuts us."""
    split = payload.index(b"\r\n\r\n") + 4
    while time.monotonic() < until:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload[:split])
        i = split
        try:
            while time.monotonic() < until and i < len(payload):
                await asyncio.sleep(1.0)
                writer.write(payload[i : i + 1])
                i += 1
                await writer.drain()
                if reader.at_eof() or writer.is_closing():
                    break
                try:
                    await asyncio.wait_for(reader.read(1), 0.001)  # data or EOF: the server answered/cut us
                    break
                except asyncio.TimeoutError:
                    continue
        except OSError:
            pass
        out["cut"] += time.monotonic() < until
        writer.close()


def summary(out: dict) -> dict:
    lat = np.array(out["lat"]) * 1000 if out["lat"] else np.array([np.nan])
    p50, p99 = np.percentile(lat, [50, 99])
    ok = sum(s == 200 for s in out["status"])
    return {"requests": len(out["status"]), "ok": ok, "errors": out["errors"], "p50_ms": p50, "p99_ms": p99}


def new_out() -> dict:
    return {"lat": [], "status": [], "errors": 0, "cut": 0}


async def scenario_slow(port: int, payload: bytes, args) -> dict:
    base = new_out()
    await asyncio.gather(*(ordinary(port, payload, time.monotonic() + args.seconds / 2, base) for _ in range(4)))
    attacked, slow = new_out(), new_out()
    until = time.monotonic() + args.seconds
    tasks = [slow_client(port, payload, until, slow) for _ in range(args.slow)]
    await asyncio.sleep(2.0)  # let the slow connections settle in first
    tasks += [ordinary(port, payload, until, attacked) for _ in range(4)]
    await asyncio.gather(*tasks)
    return {"baseline": summary(base), "with_slow": summary(attacked), "slow_cut": slow["cut"]}


async def scenario_burst(port: int, payload: bytes, args) -> dict:
    remaining = [args.burst_requests]
    out = {"lat": [], "status": [], "errors": 0, "no_retry_after": 0}

    async def worker():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            out["errors"] += 1
            return
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                t = time.perf_counter()
                writer.write(payload)
                status, headers = await read_response(reader)
                out["lat"].append(time.perf_counter() - t)
                out["status"].append(status)
                out["no_retry_after"] += status == 503 and "retry-after" not in headers
        except (OSError, asyncio.IncompleteReadError):
            out["errors"] += 1
        finally:
            writer.close()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.burst_concurrency)))
    wall = time.perf_counter() - t
    res = summary(out)
    by = {st: np.array([t for t, s in zip(out["lat"], out["status"]) if s == st]) * 1000 for st in (200, 503)}
    p99 = {st: float(np.percentile(v, 99)) if len(v) else float("nan") for st, v in by.items()}
    res.update(busy_503=out["status"].count(503), no_retry_after=out["no_retry_after"], seconds=wall)
    res.update(p99_200_ms=p99[200], p99_503_ms=p99[503])
    return res


async def scenario_decode(port: int, payload: bytes, pid: int, args) -> dict:
    big = multipart([(f"{i}.png", zero_png(4000, 4000)) for i in range(64)], "files")
    batch = head("/predict/batch", len(big)) + big
    statuses: list[int] = []
    until = time.monotonic() + args.seconds

    async def amplifier():
        while time.monotonic() < until:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(batch)
            try:
                statuses.append((await read_response(reader))[0])
            except (OSError, asyncio.IncompleteReadError):
                statuses.append(-1)
            writer.close()

    rss_before = vm_hwm_mb(pid)
    normal = new_out()
    await asyncio.gather(*(amplifier() for _ in range(4)), *(ordinary(port, payload, until, normal) for _ in range(4)))
    counts = {str(s): statuses.count(s) for s in sorted(set(statuses))}
    return {
        "batch_png_bytes": len(big),
        "batches": counts,
        "normal": summary(normal),
        "rss_mb": (rss_before, vm_hwm_mb(pid)),
    }


def vm_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM")) / 1024


SERVE_FLAGS: list[str] = []  # extra `cnnlab serve` flags (--serve-flags)


def start_server(model: Path, port: int) -> subprocess.Popen:
    args = ["serve", str(model), "--port", str(port), "--threads", "1", "--log-level", "critical"]
    return start_cnnlab([*args, "--max-body-mb", "16", *SERVE_FLAGS], "/v2/health/ready")


def run(model: Path, scenario, payload: bytes, args, *extra) -> dict:
    port = free_port()
    proc = start_server(model, port)
    try:
        return asyncio.run(scenario(port, payload, *extra, args) if extra else scenario(port, payload, args))
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20, help="length of the slow-client and decode scenarios")
    ap.add_argument("--slow", type=int, default=64)
    ap.add_argument("--burst-requests", type=int, default=2000)
    ap.add_argument("--burst-concurrency", type=int, default=200)
    ap.add_argument("--scenarios", nargs="+", default=["slow", "burst", "decode"], choices=["slow", "burst", "decode"])
    ap.add_argument("--serve-flags", default="", help="extra cnnlab serve flags, e.g. '--max-queue 8'")
    args = ap.parse_args()
    SERVE_FLAGS.extend(shlex.split(args.serve_flags))

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_inference import build_model
    from PIL import Image

    model = build_model("seed_cnn", [1, 28, 28], Path(tempfile.mkdtemp()))
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(buf, format="PNG")
    body = multipart([("x.png", buf.getvalue())], "file")
    payload = head("/predict?topk=5", len(body)) + body

    results = {}
    if "slow" in args.scenarios:
        results["slow"] = run(model, scenario_slow, payload, args)
    if "burst" in args.scenarios:
        results["burst"] = run(model, scenario_burst, payload, args)
    if "decode" in args.scenarios:
        port = free_port()
        proc = start_server(model, port)
        try:
            results["decode"] = asyncio.run(scenario_decode(port, payload, proc.pid, args))
        finally:
            proc.terminate()
            proc.wait(10)
    report(results, args)


def report(results: dict, args) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    flags = " ".join(SERVE_FLAGS) or "defaults"
    print(f"\nseed_cnn 1x28x28, server {flags}, 1 torch thread, {os.cpu_count()} CPUs shared with the client, {when}")
    if "slow" in results:
        slow = results["slow"]
        b, w = slow["baseline"], slow["with_slow"]
        print(f"slow clients ({args.slow} connections, 1 byte/s, reconnecting; 4 ordinary clients, {args.seconds:g} s)")
        print(
            f"  ordinary alone:      {b['requests']:>5} requests, {b['errors']} errors, "
            f"p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms"
        )
        print(
            f"  with slow clients:   {w['requests']:>5} requests, {w['requests'] - w['ok']} non-200, "
            f"{w['errors']} errors, p50 {w['p50_ms']:.1f} ms, p99 {w['p99_ms']:.1f} ms; "
            f"slow connections cut: {slow['slow_cut']}"
        )
    if "burst" in results:
        burst = results["burst"]
        print(
            f"burst ({args.burst_requests} requests, concurrency {args.burst_concurrency}): {burst['ok']} x 200, "
            f"{burst['busy_503']} x 503 ({burst['no_retry_after']} without Retry-After), {burst['errors']} errors, "
            f"p50 {burst['p50_ms']:.0f} ms, p99 {burst['p99_ms']:.0f} ms (200s: {burst['p99_200_ms']:.0f} ms, "
            f"503s: {burst['p99_503_ms']:.0f} ms), {burst['seconds']:.1f} s"
        )
    if "decode" in results:
        decode = results["decode"]
        n = decode["normal"]
        print(
            f"decode amplification (4 concurrent batches of 64 PNGs of 4000x4000, "
            f"{decode['batch_png_bytes'] / 1e3:.0f} KB each; {args.seconds:g} s): batch statuses {decode['batches']}; "
            f"ordinary {n['requests']} requests, {n['requests'] - n['ok']} non-200, p99 {n['p99_ms']:.1f} ms; "
            f"server peak RSS {decode['rss_mb'][0]:.0f} -> {decode['rss_mb'][1]:.0f} MB"
        )
    print(json.dumps(results, default=float))


if __name__ == "__main__":
    main()
