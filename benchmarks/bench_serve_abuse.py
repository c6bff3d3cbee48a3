"""Hostile-but-fair load against a real ``cnnlab serve`` / ``cnnlab explain`` on 127.0.0.1: slow clients, a burst,
decode amplification, and the same attacks on the explainer.

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

The explainer (a seed CNN on 3x32x32, so every upload decodes to three float32 channels):

4. **explain-memory**: ``--explain-uploads`` (18) uploads, one after another, of a small PNG that decodes
   to 4000x4000 (192 MB as float32 RGB) to a standalone ``cnnlab explain``. Reported: statuses,
   latencies, and the server's RSS before, at its peak (VmHWM) and after.
5. **explain-burst**: ``--explain-burst`` (100) such uploads at once to ``cnnlab serve --explain``'s
   ``/explain/``, each client giving up after ``--client-timeout`` (120 s); then one ordinary
   analysis. Reported: statuses (timeouts as ``timeout``), latencies, the next analysis' latency,
   and RSS before/peak/after.
6. **explain-slow-headers**: ``--slow-headers`` (1,000) connections to a standalone ``cnnlab explain``
   that send request headers one byte per second, while one ordinary client analyses a small image
   in a loop for ``--seconds``. Reported: how many connections the server closed (and when), and the
   ordinary latencies.

Run:  python benchmarks/bench_serve_abuse.py [--seconds 20] [--slow 64] [--burst-requests 2000]
      [--burst-concurrency 200] [--scenarios explain-memory explain-burst explain-slow-headers]
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
from PIL import Image

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


def vm_hwm_mb(pid: int, field: str = "VmHWM") -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith(field)) / 1024


def rss_mb(pid: int) -> float:
    return vm_hwm_mb(pid, "VmRSS")


async def post_once(port: int, payload: bytes, timeout: float) -> tuple[int | str, float]:
    """One request on a fresh connection: (status, or 'timeout' / 'error'; seconds)."""
    t = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return "error", time.perf_counter() - t
    try:
        writer.write(payload)
        status, _ = await asyncio.wait_for(read_response(reader), timeout)
    except asyncio.TimeoutError:
        status = "timeout"
    except (OSError, asyncio.IncompleteReadError):
        status = "error"
    finally:
        writer.close()
    return status, time.perf_counter() - t


def big_upload(path: str) -> bytes:
    body = multipart([("big.png", zero_png(4000, 4000))], "file")
    return head(path, len(body)) + body


def small_upload(path: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
    body = multipart([("small.png", buf.getvalue())], "file")
    return head(path, len(body)) + body


def counts(statuses: list) -> dict[str, int]:
    return {str(s): statuses.count(s) for s in sorted(set(statuses), key=str)}


async def scenario_explain_memory(port: int, pid: int, args) -> dict:
    payload, out = big_upload("/api/analyse"), []
    before = rss_mb(pid)
    for _ in range(args.explain_uploads):
        out.append(await post_once(port, payload, args.client_timeout))
    await asyncio.sleep(2)  # let freed memory go back
    lat = [t for s, t in out if s == 200]
    return {
        "upload_bytes": len(payload),
        "statuses": counts([s for s, _ in out]),
        "p50_s": float(np.median(lat)) if lat else float("nan"),
        "max_s": max(t for _, t in out),
        "rss_mb": (before, vm_hwm_mb(pid), rss_mb(pid)),
    }


async def scenario_explain_burst(port: int, pid: int, args) -> dict:
    payload = big_upload("/explain/api/analyse")
    before = rss_mb(pid)
    t = time.perf_counter()
    out = await asyncio.gather(*(post_once(port, payload, args.client_timeout) for _ in range(args.explain_burst)))
    wall = time.perf_counter() - t
    nxt = await post_once(port, small_upload("/explain/api/analyse"), args.client_timeout)
    by = {}
    for s, lat in out:
        by.setdefault(str(s), []).append(lat)
    return {
        "statuses": counts([s for s, _ in out]),
        "max_s": {k: max(v) for k, v in by.items()},
        "seconds": wall,
        "next": nxt,
        "rss_mb": (before, vm_hwm_mb(pid), rss_mb(pid)),
    }


async def scenario_explain_slow_headers(port: int, args) -> dict:
    """``--slow-headers`` connections dribbling headers; when each is closed; an ordinary client meanwhile."""
    until = time.monotonic() + args.seconds
    closed: list[float] = []
    start = time.monotonic()

    async def dribble():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            closed.append(-1.0)
            return
        try:
            writer.write(b"POST /api/analyse HTTP/1.1\r\n")
            while time.monotonic() < until:
                try:  # EOF (or any answer) within a second: the server has closed us
                    await asyncio.wait_for(reader.read(1), 1.0)
                    closed.append(time.monotonic() - start)
                    return
                except asyncio.TimeoutError:
                    writer.write(b"X")
        except OSError:
            closed.append(time.monotonic() - start)
        finally:
            writer.close()

    normal = []

    async def ordinary_loop():
        payload = small_upload("/api/analyse")
        await asyncio.sleep(1.0)
        while time.monotonic() < until:
            normal.append(await post_once(port, payload, 30))

    await asyncio.gather(*(dribble() for _ in range(args.slow_headers)), ordinary_loop())
    lat = np.array([t for s, t in normal if s == 200]) * 1000
    return {
        "connections": args.slow_headers,
        "closed": len(closed),
        "closed_after_s": (min(closed), max(closed)) if closed else None,
        "ordinary": counts([s for s, _ in normal]),
        "ordinary_p50_ms": float(np.median(lat)) if len(lat) else float("nan"),
        "ordinary_p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
    }


SERVE_FLAGS: list[str] = []  # extra `cnnlab serve` flags (--serve-flags)
SCENARIOS = ("slow", "burst", "decode", "explain-memory", "explain-burst", "explain-slow-headers")


def start_server(model: Path, port: int, *extra: str) -> subprocess.Popen:
    args = ["serve", str(model), "--port", str(port), "--threads", "1", "--log-level", "critical"]
    return start_cnnlab([*args, "--max-body-mb", "16", *SERVE_FLAGS, *extra], "/v2/health/ready")


def start_explain(model: Path, port: int) -> subprocess.Popen:
    args = ["explain", str(model), "--port", str(port), "--threads", "1", "--log-level", "critical"]
    return start_cnnlab(args, "/api/model")


def run_explain(model: Path, scenario: str, args) -> dict:
    """One explainer scenario against a fresh server process (serve --explain for the burst)."""
    port = free_port()
    burst = scenario == "explain-burst"
    proc = start_server(model, port, "--explain") if burst else start_explain(model, port)
    try:
        if scenario == "explain-slow-headers":
            return asyncio.run(scenario_explain_slow_headers(port, args))
        fn = scenario_explain_burst if burst else scenario_explain_memory
        return asyncio.run(fn(port, proc.pid, args))
    finally:
        proc.terminate()
        proc.wait(30)


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
    ap.add_argument("--explain-uploads", type=int, default=18, help="explain-memory: sequential 4000x4000 uploads")
    ap.add_argument("--explain-burst", type=int, default=100, help="explain-burst: concurrent 4000x4000 uploads")
    ap.add_argument("--client-timeout", type=float, default=120, help="seconds a client waits before giving up")
    ap.add_argument("--slow-headers", type=int, default=1000, help="explain-slow-headers: connections")
    ap.add_argument("--scenarios", nargs="+", default=["slow", "burst", "decode"], choices=[*SCENARIOS])
    ap.add_argument("--serve-flags", default="", help="extra cnnlab serve flags, e.g. '--max-queue 8'")
    args = ap.parse_args()
    SERVE_FLAGS.extend(shlex.split(args.serve_flags))

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_inference import build_model

    model = build_model("seed_cnn", [1, 28, 28], Path(tempfile.mkdtemp()))
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(buf, format="PNG")
    body = multipart([("x.png", buf.getvalue())], "file")
    payload = head("/predict?topk=5", len(body)) + body

    results = {"load": os.getloadavg()[0]}  # the machine may be shared: say how busy it was
    if "slow" in args.scenarios:
        results["slow"] = run(model, scenario_slow, payload, args)
    if "burst" in args.scenarios:
        results["burst"] = run(model, scenario_burst, payload, args)
    explain = [name for name in SCENARIOS if name.startswith("explain") and name in args.scenarios]
    explain_model = build_model("seed_cnn", [3, 32, 32], Path(tempfile.mkdtemp())) if explain else None
    for name in explain:
        results[name] = run_explain(explain_model, name, args)
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
    load = " -> ".join(f"{a:.1f}" for a in (results["load"], os.getloadavg()[0]))
    print(
        f"\nserver {flags}, 1 torch thread, {os.cpu_count()} CPUs shared with the client, {when}, "
        f"1-minute load average {load} (start -> end)"
    )
    if "slow" in results:
        slow = results["slow"]
        b, w = slow["baseline"], slow["with_slow"]
        print(
            f"seed_cnn 1x28x28: slow clients ({args.slow} connections, 1 byte/s, reconnecting; "
            f"4 ordinary clients, {args.seconds:g} s)"
        )
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
            f"seed_cnn 1x28x28: burst ({args.burst_requests} requests, concurrency {args.burst_concurrency}): "
            f"{burst['ok']} x 200, "
            f"{burst['busy_503']} x 503 ({burst['no_retry_after']} without Retry-After), {burst['errors']} errors, "
            f"p50 {burst['p50_ms']:.0f} ms, p99 {burst['p99_ms']:.0f} ms (200s: {burst['p99_200_ms']:.0f} ms, "
            f"503s: {burst['p99_503_ms']:.0f} ms), {burst['seconds']:.1f} s"
        )
    if "decode" in results:
        decode = results["decode"]
        n = decode["normal"]
        print(
            f"seed_cnn 1x28x28: decode amplification (4 concurrent batches of 64 PNGs of 4000x4000, "
            f"{decode['batch_png_bytes'] / 1e3:.0f} KB each; {args.seconds:g} s): batch statuses {decode['batches']}; "
            f"ordinary {n['requests']} requests, {n['requests'] - n['ok']} non-200, p99 {n['p99_ms']:.1f} ms; "
            f"server peak RSS {decode['rss_mb'][0]:.0f} -> {decode['rss_mb'][1]:.0f} MB"
        )
    report_explain(results, args)
    print(json.dumps(results, default=float))


def report_explain(results: dict, args) -> None:
    if "explain-memory" in results:
        r = results["explain-memory"]
        print(
            f"explain memory (standalone cnnlab explain, {args.explain_uploads} uploads one after another of a "
            f"{r['upload_bytes'] / 1e3:.0f} KB "
            f"PNG decoding to 4000x4000, seed_cnn 3x32x32): statuses {r['statuses']}, p50 {r['p50_s']:.2f} s, "
            f"max {r['max_s']:.2f} s; RSS {r['rss_mb'][0]:.0f} MB before, peak {r['rss_mb'][1]:.0f} MB, "
            f"{r['rss_mb'][2]:.0f} MB after"
        )
    if "explain-burst" in results:
        r = results["explain-burst"]
        nxt = r["next"]
        print(
            f"explain burst (seed_cnn 3x32x32, {args.explain_burst} such uploads at once to serve --explain, "
            "clients give up after "
            f"{args.client_timeout:g} s): statuses {r['statuses']} in {r['seconds']:.1f} s (slowest per status "
            + ", ".join(f"{k}: {v:.1f} s" for k, v in r["max_s"].items())
            + f"); next analysis {nxt[0]} in {nxt[1]:.2f} s; RSS {r['rss_mb'][0]:.0f} MB before, "
            f"peak {r['rss_mb'][1]:.0f} MB, {r['rss_mb'][2]:.0f} MB after"
        )
    if "explain-slow-headers" in results:
        r = results["explain-slow-headers"]
        after = r["closed_after_s"]
        when = f" after {after[0]:.1f}-{after[1]:.1f} s" if after else ""
        print(
            f"explain slow headers (standalone cnnlab explain, seed_cnn 3x32x32, {r['connections']} connections, "
            f"1 header byte/s, {args.seconds:g} s): "
            f"{r['closed']} closed by the server{when}; ordinary analyses {r['ordinary']}, "
            f"p50 {r['ordinary_p50_ms']:.0f} ms, p99 {r['ordinary_p99_ms']:.0f} ms"
        )


if __name__ == "__main__":
    main()
