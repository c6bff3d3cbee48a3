"""Batch prediction throughput and single-image server latency, against what a user would otherwise run.

Throughput: ``cnnlab predict`` (``cnnlab.serve.batch.predict_files``, the command's own code) on the
10,000 CIFAR-10 test JPEGs with each backend, against a plain script that decodes with Pillow and
runs ONNX Runtime at its best batch size and thread count (ONNX Runtime's default or 1; swept on the
first 1,000 images). All runs use the same
model and the same exported ONNX/OpenVINO files (exported once, before timing), write a CSV of the
top-1 class per image, and alternate in rounds in one process, so load from other jobs falls on all
of them alike; the best round of each is reported, with the ratio to the plain script.

Latency: a real ``cnnlab serve`` per model file (model folder = torch, ``.onnx``, ``.xml``), loaded by
the client of ``bench_serve.py`` (keep-alive connections, one request at a time each) with a 32x32
JPEG: p50/p99 of ``POST /predict`` and of ``POST /v2/models/NAME/infer`` (the image as BYTES, JSON).

The images come from ``../shared/data/cifar10-jpeg/test.tar``, extracted once into a cache folder
outside the repository (``--cache``). The model is a seeded random-weight ``--arch`` with CIFAR-10's
classes unless ``--model`` names a trained run (throughput does not depend on the weights).

Run:  python benchmarks/bench_predict.py [--model RUN] [--arch seed_cnn] [--limit 10000] [--rounds 2]
      [--workers 2] [--threads 1] [--requests 400] [--concurrency 16] [--skip-latency]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CNNLAB_SHARED_DATA", REPO.parent / "shared" / "data"))
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_test_folder(cache: Path) -> Path:
    """The 10,000 test JPEGs as test/<class>/NNNN.jpg under ``cache`` (extracted once)."""
    folder = cache / "test"
    if not (folder / "truck").is_dir():
        tar = SHARED / "cifar10-jpeg" / "test.tar"
        if not tar.is_file():
            raise SystemExit(f"{tar} not found: set CNNLAB_SHARED_DATA to the folder holding cifar10-jpeg/")
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar) as t:
            t.extractall(cache, filter="data")
    return folder


def build_model(arch: str, where: Path) -> Path:
    from cnnlab.models import create_model
    from cnnlab.runs.model_file import save_model_file

    torch.manual_seed(0)
    model = create_model(arch, num_classes=10, in_channels=3, input_size=32).eval()
    meta = {"architecture": arch, "kwargs": {}, "classes": CIFAR10, "input_shape": [3, 32, 32]}
    meta.update(mean=[0.491, 0.482, 0.447], std=[0.247, 0.243, 0.262])
    return save_model_file(where / "model", model, meta)


def plain_script(files: list[Path], onnx_path: Path, batch: int, mean, std, out: Path, threads: int = 0) -> float:
    """What a user writes by hand: Pillow decode, NumPy normalise, ONNX Runtime, a CSV of the top-1 class."""
    import onnxruntime as ort
    from PIL import Image

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads  # 0: ONNX Runtime's default (every core)
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    t = time.perf_counter()
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "probability"])
        for i in range(0, len(files), batch):
            chunk = files[i : i + batch]
            x = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) for p in chunk]) / 255.0
            x = (x.transpose(0, 3, 1, 2) - mean) / std
            logits = session.run(None, {name: x.astype(np.float32)})[0]
            e = np.exp(logits - logits.max(1, keepdims=True))
            p = e / e.sum(1, keepdims=True)
            for path, k, q in zip(chunk, p.argmax(1), p.max(1)):
                w.writerow([str(path), CIFAR10[k], f"{q:.6f}"])
    return len(files) / (time.perf_counter() - t)


def cnnlab_predict(model: Path, folder: Path, out: Path, args) -> float:
    """``cnnlab predict MODEL FOLDER -o out.csv --top-k 1`` as the command runs it (its default threads)."""
    from cnnlab.serve.batch import default_threads, predict_files

    torch.set_num_threads(default_threads(args.workers))  # what the command sets for the torch backend

    summary = predict_files(
        model, [folder], output=out, batch_size=args.batch_size, workers=args.workers, topk=1
    )  # fmt: skip
    return summary.predicted / summary.seconds


def throughput(model: Path, files: list[Path], folder: Path, exports: dict, args) -> list[tuple[str, float]]:
    """Best images/s over ``--rounds`` alternating rounds: the plain script, then cnnlab per backend."""
    from cnnlab.runs.model_file import read_meta

    meta = read_meta(model)
    tmp = Path(tempfile.mkdtemp())
    sweep = {(b, t): plain_script(files[:1000], exports["onnxruntime"], b, meta["mean"], meta["std"], tmp / "s.csv", t)
             for b in args.plain_batches for t in (0, 1)}  # fmt: skip
    (batch, threads) = max(sweep, key=sweep.get)
    print("plain script sweep on 1,000 images (batch, onnxruntime threads; 0 = its default): "
          + ", ".join(f"{b}/{t}: {v:,.0f}/s" for (b, t), v in sweep.items()))  # fmt: skip
    runs = {f"plain script (Pillow + onnxruntime, batch {batch}, threads {threads or 'default'})": lambda: plain_script(
        files, exports["onnxruntime"], batch, meta["mean"], meta["std"], tmp / "p.csv", threads)}  # fmt: skip
    for backend, path in (("torch", model), *exports.items()):
        runs[f"cnnlab predict --backend {backend}"] = lambda p=path: cnnlab_predict(p, folder, tmp / "c.csv", args)
    best = dict.fromkeys(runs, 0.0)
    for r in range(args.rounds):
        for name, fn in runs.items():
            best[name] = max(best[name], fn())
            print(f"  round {r + 1}: {name}: {best[name]:,.0f} images/s", flush=True)
    return list(best.items())


# ---- latency ----------------------------------------------------------------------------------------
def v2_request(jpeg: bytes, port: int, name: str) -> bytes:
    body = json.dumps(
        {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(jpeg).decode()]}]}
    ).encode()
    head = (
        f"POST /v2/models/{name}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def latency(model_file: Path, jpeg: bytes, args) -> list[tuple[str, int, int, float, float]]:
    """(route, requests, errors, p50 ms, p99 ms) for /predict and v2 infer against one fresh server."""
    from _server import start_cnnlab
    from bench_serve import free_port, load, request_bytes

    port = free_port()
    serve = ["serve", str(model_file), "--port", str(port), "--threads", str(args.threads), "--model-name", "m"]
    proc = start_cnnlab([*serve, "--log-level", "warning", "--max-queue", str(4 * args.concurrency)], "/ready")
    rows = []
    try:
        for route, payload in (("/predict", request_bytes(jpeg, port)), ("v2 infer", v2_request(jpeg, port, "m"))):
            asyncio.run(load(port, payload, 40, 4, time.monotonic() + 30))  # warm-up
            lat, statuses = asyncio.run(
                load(port, payload, args.requests, args.concurrency, time.monotonic() + args.max_seconds)
            )
            q = np.percentile(np.array(lat) * 1000, [50, 99])
            rows.append((route, len(statuses), sum(s != 200 for s in statuses), float(q[0]), float(q[1])))
    finally:
        proc.terminate()
        proc.wait(10)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a trained run or model folder with CIFAR-10's classes (default: random --arch)")
    ap.add_argument("--arch", default="seed_cnn")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "cnnlab" / "bench-predict"))
    ap.add_argument("--limit", type=int, default=10_000, help="images to predict (default all 10,000)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256, help="cnnlab predict --batch-size")
    ap.add_argument("--workers", type=int, default=2, help="cnnlab predict --workers")
    ap.add_argument("--threads", type=int, default=1, help="the servers' inference threads (latency part)")
    ap.add_argument("--plain-batches", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-seconds", type=float, default=60)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))

    from cnnlab.export import export

    cache = Path(args.cache)
    full = cifar_test_folder(cache)
    folder = full if args.limit >= 10_000 else _subset(full, cache / f"test-{args.limit}", args.limit)
    files = sorted(folder.rglob("*.jpg"))
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    model = Path(args.model) if args.model else build_model(args.arch, work)
    exports = {
        "onnxruntime": export(model, "onnx", work / "model.onnx", exporter="legacy", parity_n=16).path,
        "openvino": export(model, "openvino", work / "model.xml", exporter="legacy", parity_n=16).path,
    }
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{when}; {os.cpu_count()} CPUs shared with other jobs; uptime: {uptime}")
    rows = [] if args.skip_throughput else throughput(model, files, folder, exports, args)
    plain = rows[0][1] if rows else 1.0
    what = args.arch if not args.model else model
    print(f"\n{len(files):,} CIFAR-10 test JPEGs, {what}, cnnlab --workers {args.workers} "
          f"--batch-size {args.batch_size} --top-k 1, best of {args.rounds} rounds")  # fmt: skip
    print(f"{'':<58} {'images/s':>9} {'vs plain':>8}" if rows else "(throughput skipped)")
    for name, v in rows:
        print(f"{name:<58} {v:>9,.0f} {v / plain:>7.2f}x")
    if not args.skip_latency:
        from PIL import Image

        buf = io.BytesIO()
        Image.open(files[0]).save(buf, format="JPEG", quality=90)
        print(f"\nsingle-image latency, {args.requests} requests per route, concurrency {args.concurrency}")
        print(f"{'model':<14} {'route':<10} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8}")
        for label, path in (
            ("torch", model),
            ("onnxruntime", exports["onnxruntime"]),
            ("openvino", exports["openvino"]),
        ):
            for route, n, errors, p50, p99 in latency(path, buf.getvalue(), args):
                print(f"{label:<14} {route:<10} {n:>8} {errors:>6} {p50:>8.1f} {p99:>8.1f}", flush=True)
    print(f"\nafter: uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


def _subset(full: Path, where: Path, n: int) -> Path:
    """The first ``n / 10`` images of each class, linked into their own folder (a quick run)."""
    if not where.is_dir():
        for c in CIFAR10:
            (where / c).mkdir(parents=True, exist_ok=True)
            for f in sorted((full / c).glob("*.jpg"))[: max(1, n // 10)]:
                os.symlink(f, where / c / f.name)
    return where


if __name__ == "__main__":
    main()
