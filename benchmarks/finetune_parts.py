"""The fine-tune recipe's parts on EfficientNet-Lite0, timed one by one on one CPU thread (issue 27).

The model is ``timm.create_model("efficientnet_lite0", num_classes=4)`` with random weights (timing
does not depend on them), in channels_last, every batch-norm layer kept in eval mode with its scale
and shift trainable (``cnnlab.finetune.recipe.keep_bn_statistics``), inputs of 3x96x96, one
intra-op thread. "folded" is the same network after ``cnnlab.finetune.fold.fold_batchnorm``, as
``cnnlab train`` runs it under the recipe. Timed, each after a warm-up, median of ``--repeats``:

1. a training step (forward, cross-entropy, backward, fused AdamW step) at batch 16 and 32, plain
   and folded, in ms per image;
2. scoring 400 images under ``torch.inference_mode`` at eval batch 32, 64, 128 and 400, plain and
   folded, in ms per image;
3. an AdamW step over Lite0's 3.4 M parameters with every gradient filled: torch's default, the
   ``foreach`` kernels, the per-tensor loop (``foreach=False``) and ``fused=True``, in ms per step,
   the kinds interleaved (tensors out of cache, as after a forward and backward) and back to back;
4. bf16 autocast against fp32 (folded network): the training step at batch 16 and scoring at eval
   batch 64, in ms per image, with whether this CPU has bf16 kernels;
5. the best checkpoint when it is the last epoch's: a second ``torch.save`` of the model and AdamW
   state (39 MiB) through ``cnnlab.engine.checkpoint.atomic_save`` against
   ``cnnlab.files.atomic.link_or_copy`` of the file just written, in ms.

The cases of each part alternate within every repeat, so a load change hits them alike; compare
figures of one run. About 2 minutes with the defaults.

Run:  OMP_NUM_THREADS=1 python benchmarks/finetune_parts.py [--repeats 5] [--json results.jsonl] [--dir FOLDER]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from _bench import append_row, cpu_model
from torch import nn

from cnnlab.engine.checkpoint import atomic_save
from cnnlab.engine.loop import cpu_has_bf16_kernels
from cnnlab.files.atomic import link_or_copy
from cnnlab.finetune.fold import fold_batchnorm
from cnnlab.finetune.recipe import keep_bn_statistics

SIZE, CLASSES, SCORED = 96, 4, 400
TRAIN_BATCHES, EVAL_BATCHES = (16, 32), (32, 64, 128, 400)
ADAMW_KINDS = {"default": {}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}, "fused": {"fused": True}}


def lite0(folded: bool) -> tuple[nn.Module, int]:
    """Lite0 as the recipe trains it (see the module docstring); returns it and how many pairs were folded."""
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_lite0", num_classes=CLASSES).to(memory_format=torch.channels_last)
    keep_bn_statistics(model)
    return model, fold_batchnorm(model) if folded else 0


def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random normalised images (n, 3, 96, 96) in channels_last and their labels."""
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, 3, SIZE, SIZE, generator=g).contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, CLASSES, (n,), generator=g)


def interleaved(cases: dict, repeats: int, warmup: int = 1) -> dict:
    """Median seconds of one call of each case; every round calls each case once, in turn."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: dict = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def train_step(model: nn.Module, batch: int, bf16: bool = False) -> Callable[[], None]:
    """One training step of ``model`` on a fixed batch, with its own fused AdamW (cnnlab's kernel)."""
    x, y = images(batch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01, fused=True)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def score(model: nn.Module, batch: int, bf16: bool = False) -> Callable[[], None]:
    """Scoring the same 400 images in batches of ``batch`` (the last one smaller where it does not divide)."""
    x, _ = images(SCORED)

    def run() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, SCORED, batch):
                model(x[i : i + batch])

    return run


def time_training(models: dict[str, nn.Module], repeats: int) -> dict[str, float]:
    """ms per training image, plain and folded, at each training batch."""
    for m in models.values():
        m.train()
    cases = {(name, b): train_step(m, b) for b in TRAIN_BATCHES for name, m in models.items()}
    medians = interleaved(cases, repeats, warmup=2)
    return {f"{name}, batch {b}": 1e3 * s / b for (name, b), s in medians.items()}


def time_scoring(models: dict[str, nn.Module], repeats: int) -> dict[str, float]:
    """ms per scored image (400 images), plain and folded, at each eval batch."""
    for m in models.values():
        m.eval()
    cases = {f"{name}, batch {b}": score(m, b) for b in EVAL_BATCHES for name, m in models.items()}
    return {name: 1e3 * s / SCORED for name, s in interleaved(cases, repeats).items()}


def time_adamw(repeats: int, steps: int = 10) -> dict[str, float]:
    """ms per AdamW step over every parameter of Lite0, gradients filled, for each kernel choice: the kinds
    interleaved (each block of ``steps`` finds its 54 MB of parameters, gradients and moments pushed out
    of the caches by the other kinds' blocks, as a training step's forward and backward push them), then
    each kind back to back (its tensors still cached from its previous step: the best case)."""
    cases = {}
    for kind, flags in ADAMW_KINDS.items():
        model, _ = lite0(folded=False)
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01, **flags)
        cases[kind] = lambda opt=opt: [opt.step() for _ in range(steps)]
    out = {f"{kind}, interleaved": 1e3 * s / steps for kind, s in interleaved(cases, repeats, warmup=2).items()}
    for kind, fn in cases.items():
        out[f"{kind}, back to back"] = 1e3 * interleaved({kind: fn}, repeats, warmup=2)[kind] / steps
    return out


def time_bf16(model: nn.Module, repeats: int, train_batch: int = 16, eval_batch: int = 64) -> dict[str, float]:
    """ms per image, fp32 against bf16 autocast, for a training step and for scoring (``model`` folded)."""
    model.train()
    train = interleaved(
        {"fp32": train_step(model, train_batch), "bf16": train_step(model, train_batch, bf16=True)}, repeats, 2
    )
    model.eval()
    scoring = interleaved({"fp32": score(model, eval_batch), "bf16": score(model, eval_batch, bf16=True)}, repeats)
    out = {f"train {k}, batch {train_batch}": 1e3 * s / train_batch for k, s in train.items()}
    return out | {f"score {k}, batch {eval_batch}": 1e3 * s / SCORED for k, s in scoring.items()}


def time_best_checkpoint(folder: Path, repeats: int) -> tuple[dict[str, float], int]:
    """ms to write ``best.pt`` when it holds what ``last.pt`` holds: saved again, or linked; and its bytes."""
    model, _ = lite0(folded=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()  # AdamW's two moments per parameter: the state a checkpoint carries
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}
    last, best = folder / "last.pt", folder / "best.pt"
    atomic_save(state, last)
    cases = {"atomic_save again": lambda: atomic_save(state, best), "link_or_copy": lambda: link_or_copy(last, best)}
    return {k: 1e3 * s for k, s in interleaved(cases, repeats).items()}, last.stat().st_size


def default_adamw_kernel(params: list[torch.Tensor]) -> str:
    """Which of the kernels above torch's AdamW picks for ``params`` when given no flag."""
    from torch.optim.optimizer import _default_to_fused_or_foreach  # private: a benchmark may look

    fused, foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)
    return "fused" if fused else "foreach" if foreach else "for-loop"


def bf16_flags() -> list[str]:
    """The processor's bf16 and AMX flags from /proc/cpuinfo ([] where there are none or no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return sorted(f for f in flags if "bf16" in f or f.startswith("amx"))


def show(title: str, figures: dict[str, float], unit: str) -> None:
    print(title)
    for name, value in figures.items():
        print(f"  {name:<30} {value:8.2f} {unit}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds per case; the median is reported")
    ap.add_argument("--json", help="append one JSON line of the results to this file")
    ap.add_argument("--dir", help="folder for the checkpoint files (default: a temporary folder)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load_start = os.getloadavg()
    models = {}
    pairs = 0
    for name, folded in (("plain", False), ("folded", True)):
        models[name], n = lite0(folded)
        pairs = max(pairs, n)
    params = sum(p.numel() for p in models["plain"].parameters())
    print(f"{cpu_model()}, torch {torch.__version__}, timm {timm.__version__}")
    print(f"EfficientNet-Lite0, {params / 1e6:.2f} M parameters, {pairs} conv+BN pairs folded, {SIZE} px, 1 thread")
    results = {
        "train_ms_per_image": time_training(models, args.repeats),
        "score_ms_per_image": time_scoring(models, args.repeats),
        "adamw_ms_per_step": time_adamw(args.repeats),
        "bf16_ms_per_image": time_bf16(models["folded"], args.repeats),
    }
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        results["best_checkpoint_ms"], size = time_best_checkpoint(Path(tmp), args.repeats)
    units = {"train": "ms/image", "score": "ms/image", "adamw": "ms/step", "bf16": "ms/image", "best": "ms"}
    for key, figures in results.items():
        show(key, figures, units[key.split("_")[0]])
    native, flags = cpu_has_bf16_kernels(), bf16_flags()
    default = default_adamw_kernel(list(models["plain"].parameters()))
    print(f"AdamW's default kernel for these parameters: {default}; the checkpoint: {size / 2**20:.1f} MiB")
    print(f"bf16 kernels in oneDNN: {native}; bf16 and AMX flags of the CPU: {' '.join(flags) or 'none'}")
    load_end = os.getloadavg()
    print(f"load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end; median of {args.repeats}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        row = {"benchmark": "finetune_parts", "torch": torch.__version__, "timm": timm.__version__, "threads": 1}
        row |= {"repeats": args.repeats, "load_average_start": load_start, "load_average_end": load_end}
        row |= {"parameters": params, "folded_pairs": pairs, "checkpoint_bytes": size, "adamw_default": default}
        append_row(Path(args.json), row | {"bf16_kernels": native, "bf16_cpu_flags": flags, **results})


if __name__ == "__main__":
    main()
