"""Inference throughput: torch eager vs ONNX Runtime vs ONNX Runtime INT8, at batch 1 and batch 64.

One process, the same normalised inputs for every engine, interleaved over several rounds so that
machine noise hits them alike; the figures are medians of images/s and their ratios to torch eager,
all measured in this one run. The ONNX file comes from ``cnnlab.export.onnx.export_onnx`` (with its
parity check), the INT8 files from ONNX Runtime's dynamic quantisation and its static quantisation
(QDQ, per-channel, calibrated on the parity inputs: the model's test images when the dataset is
available, else random normal inputs).

Run:  python benchmarks/bench_inference.py [MODEL] [--arch seed_cnn --input 3x32x32] [--threads 1]
      [--rounds 5] [--exporter dynamo|legacy]
MODEL is a run or model folder; without it a model file with random weights is built for --arch.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch


def build_model(arch: str, shape: list[int], folder: Path) -> Path:
    from cnnlab.models import create_model
    from cnnlab.runs.model_file import save_model_file

    torch.manual_seed(0)
    model = create_model(arch, num_classes=10, in_channels=shape[0], input_size=shape[1]).eval()
    meta = {
        "architecture": arch,
        "kwargs": {},
        "classes": [str(i) for i in range(10)],
        "input_shape": shape,
        "mean": [0.5] * shape[0],
        "std": [0.25] * shape[0],
    }
    return save_model_file(folder / "model", model, meta)


def quantise(fp32: Path, folder: Path, calib: np.ndarray) -> dict[str, Path]:
    from onnxruntime import quantization as q

    dyn, stat = folder / "int8-dynamic.onnx", folder / "int8-static.onnx"
    q.quantize_dynamic(str(fp32), str(dyn), weight_type=q.QuantType.QUInt8)

    class Reader:
        def __init__(self):
            self.it = iter([{"input": calib[i : i + 32]} for i in range(0, len(calib), 32)])

        def get_next(self):
            return next(self.it, None)

    q.quantize_static(
        str(fp32),
        str(stat),
        Reader(),
        quant_format=q.QuantFormat.QDQ,
        per_channel=True,
        activation_type=q.QuantType.QInt8,
        weight_type=q.QuantType.QInt8,
    )
    return {"onnxruntime int8 dynamic": dyn, "onnxruntime int8 static": stat}


def images_per_second(fn, x: np.ndarray, min_seconds: float) -> float:
    """Calls fn(x) repeatedly for at least ``min_seconds`` (after one warm-up call); images/s."""
    fn(x)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or n < 3:
        fn(x)
        n += 1
    return n * len(x) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="run or model folder (default: random weights for --arch)")
    ap.add_argument("--arch", default="seed_cnn")
    ap.add_argument("--input", default="3x32x32", help="C x H x W for --arch")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for every engine (default 1)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5, help="minimum time per measurement")
    ap.add_argument("--exporter", default="dynamo", choices=["dynamo", "legacy"])
    args = ap.parse_args()

    from cnnlab.export.onnx import export_onnx, onnx_logits_fn
    from cnnlab.export.parity import parity_inputs, torch_logits_fn
    from cnnlab.runs.model_file import load_model

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-bench-"))
    path = Path(args.model) if args.model else build_model(args.arch, [int(v) for v in args.input.split("x")], tmp)
    model, meta = load_model(path)
    fp32, report = export_onnx(path, tmp / "model.onnx", exporter=args.exporter)
    print(report.line())
    x, source = parity_inputs(meta, 256)
    engines = {"torch eager fp32": torch_logits_fn(model), "onnxruntime fp32": onnx_logits_fn(fp32, args.threads)}
    engines.update({k: onnx_logits_fn(p, args.threads) for k, p in quantise(fp32, tmp, x).items()})
    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for batch in (1, 64):
            xb = np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))
            for name, fn in engines.items():
                results.setdefault((name, batch), []).append(images_per_second(fn, xb, args.seconds))

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\n{meta['architecture']} {'x'.join(map(str, meta['input_shape']))}, threads {args.threads}, "
        f"{args.rounds} rounds, inputs: {source}, torch {torch.__version__}, {when}"
    )
    print(f"{'engine':<26} {'batch':>5} {'img/s (median)':>15} {'vs torch':>9}")
    for batch in (1, 64):
        base = statistics.median(results[("torch eager fp32", batch)])
        for name in engines:
            med = statistics.median(results[(name, batch)])
            print(f"{name:<26} {batch:>5} {med:>15,.0f} {med / base:>8.2f}x")


if __name__ == "__main__":
    main()
