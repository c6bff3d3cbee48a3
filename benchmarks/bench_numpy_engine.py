"""Benchmark of the NumPy engine: step time vs torch, speed-up over seed 003's approach, accuracy.

Parts (``--parts step,profile,baseline,mnist,cifar10``):

* ``step``: one LeNet-5 training step (batch 64, float32, Adam) in ``cnnlab.numpy_engine`` and in
  torch on the CPU, same weights and inputs, timed in one process in alternating rounds (other jobs
  share the machine, so only ratios measured side by side mean something). BLAS/OpenMP threads 1
  and 2 are both measured for each engine.
* ``profile``: time of each LeNet layer's forward and backward pass in the engine.
* ``baseline``: images per second of seed 003's one-image-at-a-time patch-loop approach
  (``benchmarks/seed003_baseline.py``, same LeNet) against the engine's batched step.
* ``mnist``: LeNet-5 on the full MNIST training set (60,000 images, no validation split, Adam 1e-3,
  batch 64); test accuracy after every epoch and seconds per epoch.
* ``cifar10``: the same on the RGB CIFAR-10 JPEG copy (seed 003 reached about 30% on grayscale).

Run: ``.venv/bin/python benchmarks/bench_numpy_engine.py --parts step,baseline --json out.json``.
The data parts need ``../shared/data`` next to the repository or ``CNNLAB_SHARED_DATA``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import cnnlab.numpy_engine as ne  # noqa: E402
from cnnlab.scratch import Batches, evaluate, train_one_epoch  # noqa: E402

SHARED = Path(os.environ.get("CNNLAB_SHARED_DATA", REPO.parent / "shared" / "data"))


def torch_lenet(in_channels: int = 1, pad: int = 2):
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


def bench_step(batch: int = 64, rounds: int = 10, steps: int = 5) -> dict:
    """Median seconds per training step for each engine and thread count, measured alternately."""
    import torch

    ne.manual_seed(0)
    model = ne.lenet()
    tmodel = torch_lenet()
    tmodel.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    loss_fn, opt = ne.CrossEntropyLoss(), ne.Adam(model.parameters())
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    tloss, topt = torch.nn.CrossEntropyLoss(), torch.optim.Adam(tmodel.parameters())

    def ours():
        loss_fn(model.forward(x), y)
        opt.zero_grad()
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()

    def theirs():
        topt.zero_grad()
        tloss(tmodel(xt), yt).backward()
        topt.step()

    default_torch_threads = torch.get_num_threads()
    configs = {}
    for threads in (1, 2):
        configs[f"numpy_{threads}t"] = (ours, threads, None)
        configs[f"torch_{threads}t"] = (theirs, None, threads)
    times: dict[str, list[float]] = {k: [] for k in configs}
    cpu: dict[str, list[float]] = {k: [] for k in configs}  # process CPU time: robust to other jobs
    for r in range(rounds + 1):  # round 0 warms up
        for name, (fn, blas, tthreads) in configs.items():
            with threadpool_limits(blas):
                if tthreads:
                    torch.set_num_threads(tthreads)
                t, c = time.perf_counter(), time.process_time()
                for _ in range(steps):
                    fn()
                if r:
                    times[name].append((time.perf_counter() - t) / steps)
                    cpu[name].append((time.process_time() - c) / steps)
    torch.set_num_threads(default_torch_threads)
    return {"batch": batch, **_step_summary(times, cpu)}


def _step_summary(times: dict[str, list[float]], cpu: dict[str, list[float]]) -> dict:
    """Medians, fastest rounds and numpy/torch ratios from per-round seconds per step."""
    med = {k: statistics.median(v) for k, v in times.items()}
    fastest = {k: min(v) for k, v in times.items()}
    cpu_1t = {k: statistics.median(cpu[k]) for k in ("numpy_1t", "torch_1t")}
    # ratio per round (same moment, same machine load), then the median over rounds
    per_round = [
        min(a, b) / min(c, d)
        for a, b, c, d in zip(times["numpy_1t"], times["numpy_2t"], times["torch_1t"], times["torch_2t"])
    ]

    def best(d: dict, engine: str) -> float:
        return min(d[f"{engine}_1t"], d[f"{engine}_2t"])

    return {
        "ms_per_step": {k: round(v * 1e3, 3) for k, v in med.items()},
        "fastest_round_ms_per_step": {k: round(v * 1e3, 3) for k, v in fastest.items()},
        "cpu_ms_per_step_1_thread": {k: round(v * 1e3, 3) for k, v in cpu_1t.items()},
        "ratio_numpy_over_torch_best": round(best(med, "numpy") / best(med, "torch"), 3),
        "ratio_median_of_rounds": round(statistics.median(per_round), 3),
        "ratio_fastest_rounds": round(best(fastest, "numpy") / best(fastest, "torch"), 3),
        "ratio_cpu_1_thread": round(cpu_1t["numpy_1t"] / cpu_1t["torch_1t"], 3),
        "ratio_same_threads": {t: round(med[f"numpy_{t}t"] / med[f"torch_{t}t"], 3) for t in (1, 2)},
    }


def bench_profile(batch: int = 64, steps: int = 30) -> dict:
    """Per-layer forward/backward time of the LeNet step (fastest of ``steps``, 1 thread), in ms."""
    ne.manual_seed(0)
    model = ne.lenet()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    loss_fn, opt = ne.CrossEntropyLoss(), ne.Adam(model.parameters())
    n = len(model)
    fwd, bwd, step = [float("inf")] * n, [float("inf")] * n, float("inf")
    with threadpool_limits(1):
        for _ in range(steps):
            h = x
            for i, layer in enumerate(model.layers):
                t = time.perf_counter()
                h = layer.forward(h)
                fwd[i] = min(fwd[i], time.perf_counter() - t)
            loss_fn(h, y)
            g = loss_fn.backward()
            for i in reversed(range(n)):
                model[i].needs_input_grad = i > 0  # as Sequential.backward(input_grad=False) does
                t = time.perf_counter()
                g = model[i].backward(g)
                bwd[i] = min(bwd[i], time.perf_counter() - t)
            t = time.perf_counter()
            opt.step()
            opt.zero_grad()
            step = min(step, time.perf_counter() - t)
    rows = [
        {"layer": f"{i} {type(m).__name__}", "forward_ms": fwd[i] * 1e3, "backward_ms": bwd[i] * 1e3}
        for i, m in enumerate(model.layers)
    ]
    return {"layers": rows, "optimizer_ms": step * 1e3}


def bench_baseline(batch: int = 64, images: int = 16, rounds: int = 3) -> dict:
    """Images/s of the seed-003-style per-image loop vs the engine (same LeNet, same machine, alternating)."""
    from seed003_baseline import SeedStyleLeNet, check_against_engine

    ne.manual_seed(0)
    model = ne.lenet()
    base = SeedStyleLeNet(model.state_dict(), padding=2)
    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    loss_fn, opt = ne.CrossEntropyLoss(), ne.SGD(model.parameters(), lr=0.01)
    ours_t, base_t = [], []
    with threadpool_limits(1):
        for _ in range(rounds):
            t = time.perf_counter()
            for _ in range(5):
                loss_fn(model.forward(x), y)
                opt.zero_grad()
                model.backward(loss_fn.backward(), input_grad=False)
                opt.step()
            ours_t.append(batch * 5 / (time.perf_counter() - t))
            t = time.perf_counter()
            for i in range(images):
                base.train_step(x[i].transpose(1, 2, 0).astype(np.float64), int(y[i]), lr=0.01)
            base_t.append(images / (time.perf_counter() - t))
    ours_ips, base_ips = statistics.median(ours_t), statistics.median(base_t)
    return {
        "engine_images_per_s": round(ours_ips, 1),
        "seed003_images_per_s": round(base_ips, 2),
        "speedup": round(ours_ips / base_ips, 1),
        "seed003_hours_per_mnist_epoch": round(60000 / base_ips / 3600, 2),
        "gradient_agreement_max_rel_diff": check_against_engine(),
    }


def bench_training(
    name: str, epochs: int, batch: int = 64, lr: float = 1e-3, model_name: str = "lenet", torch_epoch: bool = True
) -> dict:
    """Train on the full training set of ``name``; test accuracy and seconds after every epoch.

    With ``torch_epoch`` the same LeNet also trains one epoch in torch (1 thread, same batches) right
    after the engine's first epoch, so the seconds per epoch can be read against torch at the same load.
    """
    from cnnlab.data.datasets import load_dataset
    from cnnlab.data.splits import channel_stats

    t = time.perf_counter()
    ds = load_dataset(name, root=SHARED)
    load_s = time.perf_counter() - t
    mean, std = (np.asarray(v) for v in channel_stats(ds.train_images))
    train = Batches(ds.train_images, ds.train_labels, mean, std)
    test = Batches(ds.test_images, ds.test_labels, mean, std)
    ne.manual_seed(0)
    model = ne.create_model(model_name, in_channels=ds.channels, input_size=ds.image_size, num_classes=10)
    loss_fn, opt = ne.CrossEntropyLoss(), ne.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(0)
    rows, torch_row = [], None
    with threadpool_limits(1):
        for epoch in range(1, epochs + 1):
            t, c = time.perf_counter(), time.process_time()
            row = train_one_epoch(model, loss_fn, opt, train, batch, rng)
            train_s, cpu_s = time.perf_counter() - t, time.process_time() - c
            t = time.perf_counter()
            row |= evaluate(model, test, "test")
            row |= {"train_seconds": train_s, "train_cpu_seconds": cpu_s, "eval_seconds": time.perf_counter() - t}
            rows.append({"epoch": epoch, **row})
            print(
                f"  {name} epoch {epoch}: test_acc {row['test_acc']:.4f}  {train_s:.1f} s ({cpu_s:.1f} s CPU)",
                flush=True,
            )
            if epoch == 1 and torch_epoch and model_name == "lenet":
                torch_row = _torch_epoch(train, test, ds.channels, batch, lr)
                print(f"  torch epoch 1: test_acc {torch_row['test_acc']:.4f}  {torch_row['train_seconds']:.1f} s")
    return {
        "dataset": name, "model": model_name, "batch": batch, "lr": lr, "load_seconds": load_s,
        "epochs": rows, "torch_epoch_1": torch_row,
    }  # fmt: skip


def _torch_epoch(train: Batches, test: Batches, channels: int, batch: int, lr: float) -> dict:
    """One epoch of the same LeNet in torch on the CPU (1 thread), fed the same normalised batches."""
    import torch

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmodel = torch_lenet(channels, 2 if channels == 1 else 0)
    topt, tloss = torch.optim.Adam(tmodel.parameters(), lr=lr), torch.nn.CrossEntropyLoss()
    order = np.random.default_rng(0).permutation(len(train))
    t, c = time.perf_counter(), time.process_time()
    for s in range(0, len(order), batch):
        x, y = train.get(np.sort(order[s : s + batch]))
        topt.zero_grad()
        tloss(tmodel(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        topt.step()
    seconds, cpu_s = time.perf_counter() - t, time.process_time() - c
    with torch.no_grad():
        chunks = [test.get(slice(i, i + 1000))[0] for i in range(0, len(test), 1000)]
        preds = np.concatenate([tmodel(torch.from_numpy(x)).argmax(1).numpy() for x in chunks])
    torch.set_num_threads(threads)
    return {"train_seconds": seconds, "train_cpu_seconds": cpu_s, "test_acc": float((preds == test.labels).mean())}


def markdown(out: dict) -> str:
    """The results as the Markdown tables quoted in docs/benchmarks.md."""
    load = f"{out['load_average_start'][0]:.1f} at start / {out['load_average_end'][0]:.1f} at end"
    lines = [f"Measured {out['date']}, numpy {out['numpy']}, {out['cpu_count']} CPUs, load average {load}."]
    if "step" in out:
        lines += _step_rows(out["step"])
    if "baseline" in out:
        b = out["baseline"]
        lines += [
            "",
            "| same LeNet-5, one training step | images/s |",
            "|---|---|",
            f"| seed 003's approach (one image, patch loops) | {b['seed003_images_per_s']:.1f} |",
            f"| cnnlab.numpy_engine (batch 64) | {b['engine_images_per_s']:.0f} |",
            f"| **speed-up** | **{b['speedup']:.0f}x** |",
            f"| seed-003 style: hours per MNIST epoch | {b['seed003_hours_per_mnist_epoch']:.2f} |",
        ]
    if "profile" in out:
        p = out["profile"]
        total = sum(r["forward_ms"] + r["backward_ms"] for r in p["layers"]) + p["optimizer_ms"]
        lines += [
            "",
            "| layer (fastest of 30 steps, 1 thread) | forward ms | backward ms | share |",
            "|---|---|---|---|",
        ]
        for r in p["layers"]:
            share = (r["forward_ms"] + r["backward_ms"]) / total
            lines.append(f"| {r['layer']} | {r['forward_ms']:.2f} | {r['backward_ms']:.2f} | {share:.0%} |")
        lines.append(f"| Adam step | | {p['optimizer_ms']:.2f} | {p['optimizer_ms'] / total:.0%} |")
    for key in ("mnist", "cifar10"):
        if key in out:
            lines += _training_rows(key, out[key])
    return "\n".join(lines)


def _step_rows(st: dict) -> list[str]:
    rows = ["", "| LeNet-5 train step, batch 64, float32 | ms/step |", "|---|---|"]
    for k, v in st["ms_per_step"].items():
        engine, threads = k.split("_")
        rows.append(f"| {engine}, {threads[0]} thread(s), median wall time | {v:.2f} |")
    for k, v in st["cpu_ms_per_step_1_thread"].items():
        rows.append(f"| {k.split('_')[0]}, 1 thread, median CPU time | {v:.2f} |")
    return rows + [
        f"| **numpy / torch**, median wall time, best thread count | **{st['ratio_numpy_over_torch_best']:.2f}x** |",
        f"| numpy / torch, median of per-round ratios | {st['ratio_median_of_rounds']:.2f}x |",
        f"| numpy / torch, fastest round of each | {st['ratio_fastest_rounds']:.2f}x |",
        f"| numpy / torch, CPU time, 1 thread | {st['ratio_cpu_1_thread']:.2f}x |",
    ]


def _training_rows(key: str, r: dict) -> list[str]:
    rows = ["", f"| {key} epoch | test accuracy | train s (wall) | train s (CPU) | eval s |", "|---|---|---|---|---|"]
    for e in r["epochs"]:
        acc, wall, cpu_s, ev = e["test_acc"], e["train_seconds"], e["train_cpu_seconds"], e["eval_seconds"]
        rows.append(f"| {e['epoch']} | {acc:.4f} | {wall:.1f} | {cpu_s:.1f} | {ev:.1f} |")
    if r.get("torch_epoch_1"):
        t = r["torch_epoch_1"]
        acc, wall, cpu_s = t["test_acc"], t["train_seconds"], t["train_cpu_seconds"]
        rows.append(f"| torch, 1 thread, epoch 1 (same run) | {acc:.4f} | {wall:.1f} | {cpu_s:.1f} | |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="step,baseline", help="comma list of step,profile,baseline,mnist,cifar10")
    ap.add_argument("--mnist-epochs", type=int, default=3)
    ap.add_argument("--cifar-epochs", type=int, default=5)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    parts = args.parts.split(",")
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "load_average_start": os.getloadavg(),
    }
    if "step" in parts:
        out["step"] = bench_step()
        print("step:", json.dumps(out["step"]), flush=True)
    if "profile" in parts:
        out["profile"] = bench_profile()
    if "baseline" in parts:
        out["baseline"] = bench_baseline()
        print("baseline:", json.dumps(out["baseline"]), flush=True)
    if "mnist" in parts:
        out["mnist"] = bench_training("mnist", args.mnist_epochs)
    if "cifar10" in parts:
        out["cifar10"] = bench_training("cifar10", args.cifar_epochs)
    out["load_average_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(markdown(out))


if __name__ == "__main__":
    main()
