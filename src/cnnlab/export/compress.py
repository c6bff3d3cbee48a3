"""Model compression (seed 002, step 10 "Model Optimization"): INT8 quantisation, magnitude pruning, distillation.

The seed lists what each technique promises: INT8 "4x smaller, 2-4x faster, ~1% accuracy loss";
pruning "removes 50-90% of the parameters, may need fine-tuning"; distillation "a smaller student
that keeps the teacher's accuracy". Each function here does the technique on a trained model file
and measures the promise on this machine instead of quoting it: a table of file size (also
gzip-compressed, which is where unstructured sparsity pays off), parameters, latency at batch 1,
throughput at batch 64, test accuracy and top-1 agreement with the original.

* :func:`quantize_int8` — ONNX Runtime quantisation of the exported (parity-checked) ONNX graph:
  ``dynamic`` (weights INT8 offline, activations quantised on the fly) or ``static`` (activation
  ranges calibrated on training images, QDQ format, per-channel weights).
* :func:`prune_model` — global L1 magnitude pruning of conv/linear weights (Han et al. 2015), then
  fine-tuning with the masks held fixed; the zeros are made permanent in a new model file.
* :func:`distill_model` — knowledge distillation (Hinton et al. 2015): the student minimises
  ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)``.
"""

from __future__ import annotations

import copy
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from cnnlab.errors import CnnlabError
from cnnlab.export.parity import LogitsFn, torch_logits_fn
from cnnlab.files import atomic
from cnnlab.runs.builtin import output_dir
from cnnlab.runs.model_file import WEIGHTS, _model_folder, load_model, save_model_file

# ---- measuring -------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of a before/after table."""

    name: str
    file: str  # file name only (no folders)
    size_mb: float
    gzip_mb: float
    params: int  # non-zero parameters (weights stored as zeros do not count)
    latency_ms: float  # one image, batch 1 (median)
    throughput: float  # images/s at batch 64
    accuracy: float  # test split of the model's dataset
    agreement: float  # top-1 agreement with the original model on the test split


@dataclass
class CompressResult:
    method: str
    out: Path
    rows: list[Row]
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.extra.items())
        return format_table(self.rows, f"{self.method} ({settings})" if settings else self.method)


def format_table(rows: list[Row], title: str = "") -> str:
    cols = ("size MB", "gzip MB", "params", "ms/img b1", "img/s b64", "acc", "agree")
    widths = (8, 8, 10, 10, 10, 7, 7)
    head = f"{'model':<26} " + " ".join(f"{c:>{w}}" for c, w in zip(cols, widths))
    lines = [title, head, "-" * len(head)] if title else [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.name[:26]:<26} {r.size_mb:8.3f} {r.gzip_mb:8.3f} {r.params:10,d} {r.latency_ms:10.3f} "
            f"{r.throughput:10.0f} {r.accuracy:7.2%} {r.agreement:7.2%}"
        )
    return "\n".join(lines)


def file_sizes(path: Path) -> tuple[float, float]:
    """(size, gzip-compressed size) in MB; gzip shows what zeros from pruning save in storage."""
    raw = path.read_bytes()
    return len(raw) / 1e6, len(zlib.compress(raw, 6)) / 1e6


def time_fn(fn: LogitsFn, x: np.ndarray, runs: int = 20) -> float:
    """Median seconds per call of ``fn(x)`` after two warm-up calls."""
    fn(x)
    fn(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def measure(
    name: str,
    fn: LogitsFn,
    path: Path,
    params: int,
    test: tuple[np.ndarray, np.ndarray],
    ref_pred: np.ndarray,
    runs: int,
) -> Row:
    x, y = test
    preds = np.concatenate([fn(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
    batch = np.ascontiguousarray(np.resize(x, (64, *x.shape[1:])))  # 64 test images (repeated if fewer)
    size, gz = file_sizes(path)
    return Row(
        name=name,
        file=path.name,
        size_mb=size,
        gzip_mb=gz,
        params=params,
        latency_ms=1000 * time_fn(fn, batch[:1], runs),
        throughput=64 / time_fn(fn, batch, max(3, runs // 4)),
        accuracy=float((preds == y).mean()),
        agreement=float((preds == ref_pred).mean()),
    )


def nonzero_params(model: nn.Module) -> int:
    return int(sum(int((p != 0).sum()) for p in model.parameters()))


# ---- data ------------------------------------------------------------------------------------------


def run_data(model_path) -> tuple[Any, Any, tuple[np.ndarray, np.ndarray]]:
    """(config, PreparedData, test arrays) of the model's run.

    The loaders (calibration, fine-tuning, distillation) come from the training workflow's own data
    step on the run's config, so every data flag means what it meant in training; the test arrays are
    the exact test split of the run's split.csv."""
    from cnnlab.config import Config, from_dict
    from cnnlab.runs.run import find_run
    from cnnlab.workflow import load_data, start_session

    run = find_run(model_path)
    if run is None:
        raise CnnlabError(
            f"{model_path} is not inside a run folder: compression needs the run (its data, splits and config) "
            "for calibration, fine-tuning and accuracy; give the folder printed by 'cnnlab train'"
        )
    run.torch_model("cpu", "compression")  # a NumPy-engine run is refused here, with the reason
    cfg = from_dict(Config, run.config)
    cfg.train.device, cfg.data.num_workers = "cpu", 0
    _, data = load_data(start_session(cfg, log=lambda s: None))
    test = run.examples("test")
    return cfg, data, (test.inputs(np.arange(len(test))), test.labels)


def loader_arrays(loader, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised inputs (N, C, H, W) and labels (N,) from an evaluation loader."""
    xs, ys, n = [], [], 0
    for x, y in loader:
        xs.append(x.cpu().numpy())
        ys.append(y.cpu().numpy())
        n += len(y)
        if limit is not None and n >= limit:
            break
    x, y = np.concatenate(xs), np.concatenate(ys)
    return (x[:limit], y[:limit]) if limit is not None else (x, y)


def _predictions(fn: LogitsFn, x: np.ndarray) -> np.ndarray:
    return np.concatenate([fn(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])


def _out_dir(model_path, out, name: str) -> Path:
    return Path(out) if out is not None else output_dir(_model_folder(model_path).parent) / name


def _save_result(result: CompressResult) -> CompressResult:
    report = {"method": result.method, **result.extra, "rows": [asdict(r) for r in result.rows]}
    atomic.write_text(result.out / "compression.json", json.dumps(report, indent=2) + "\n")
    return result


# ---- INT8 ------------------------------------------------------------------------------------------


class _Calibration:
    """ONNX Runtime CalibrationDataReader over normalised training images, in batches of 32."""

    def __init__(self, name: str, x: np.ndarray):
        self.batches = iter([{name: np.ascontiguousarray(x[i : i + 32])} for i in range(0, len(x), 32)])

    def get_next(self):
        return next(self.batches, None)

    def rewind(self):  # not needed for MinMax calibration, part of the reader interface
        pass


def quantize_int8(
    model_path,
    mode: str = "dynamic",
    out=None,
    calibration: int = 256,
    runs: int = 20,
    threads: int | None = None,
    exporter: str = "dynamo",
) -> CompressResult:
    """Quantise the model to INT8 with ONNX Runtime and measure fp32 torch / fp32 ONNX / INT8 ONNX."""
    from cnnlab.export.onnx import _require_onnx, export_onnx, onnx_logits_fn, write_metadata

    if mode not in ("dynamic", "static"):
        raise CnnlabError(f"INT8 mode must be 'dynamic' or 'static', got {mode!r}")
    _require_onnx()
    from onnxruntime import quantization as q

    model, meta = load_model(model_path)
    cfg, data, test = run_data(model_path)
    out = _out_dir(model_path, out, f"int8-{mode}")
    out.mkdir(parents=True, exist_ok=True)
    fp32, _ = export_onnx(model_path, out / "model.fp32.onnx", exporter=exporter)  # parity-checked against torch
    int8 = out / f"model.int8-{mode}.onnx"
    prepped = out / "model.fp32.prep.onnx"
    try:
        q.quant_pre_process(str(fp32), str(prepped), skip_symbolic_shape=True)
    except Exception:  # noqa: BLE001 - pre-processing is an optimisation; quantise the plain graph instead
        prepped = fp32
    if mode == "dynamic":
        q.quantize_dynamic(str(prepped), str(int8), weight_type=q.QuantType.QUInt8)
    else:
        xcal, _ = loader_arrays(_eval_view(data.train), calibration)
        q.quantize_static(
            str(prepped),
            str(int8),
            _Calibration("input", xcal),
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            activation_type=q.QuantType.QInt8,
            weight_type=q.QuantType.QInt8,
        )
    if prepped != fp32:
        prepped.unlink()
    write_metadata(int8, meta)
    ref_fn = torch_logits_fn(model)
    ref = _predictions(ref_fn, test[0])
    params = nonzero_params(model)
    with _torch_threads(threads):
        rows = [
            measure("torch fp32 (original)", ref_fn, _model_folder(model_path) / WEIGHTS, params, test, ref, runs),
            measure("onnxruntime fp32", onnx_logits_fn(fp32, threads), fp32, params, test, ref, runs),
            measure(f"onnxruntime int8 {mode}", onnx_logits_fn(int8, threads), int8, params, test, ref, runs),
        ]
    extra = {"calibration_images": min(calibration, data.train.num_samples)} if mode == "static" else {}
    return _save_result(CompressResult(f"int8-{mode}", out, rows, extra))


def _eval_view(loader):
    """The training images without augmentation or shuffling (for calibration)."""
    view = copy.copy(loader)
    view.augment, view.shuffle = None, False
    return view


class _torch_threads:
    def __init__(self, n: int | None):
        self.n, self.old = n, torch.get_num_threads()

    def __enter__(self):
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


# ---- pruning ---------------------------------------------------------------------------------------


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, 'weight') for every conv and linear layer: the weights magnitude pruning acts on."""
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def sparsity(model: nn.Module) -> float:
    """Fraction of zeros among the conv/linear weights."""
    weights = [getattr(m, n) for m, n in prunable(model)]
    total = sum(w.numel() for w in weights)
    return float(sum(int((w == 0).sum()) for w in weights) / max(total, 1))


def _fit(model, loader, epochs: int, cfg, loss_fn: Callable, lr_scale: float = 1.0, forward=None) -> None:
    """A few epochs (fine-tuning or distillation) through the training step itself: the run's optimiser,
    AMP, clipping mode, accumulation and penalties, as ``cnnlab train`` used them."""
    from cnnlab.engine.loop import EpochParts, StepOptions, train_one_epoch
    from cnnlab.engine.optim import build_optimizer

    optim_cfg = copy.deepcopy(cfg.optim)
    optim_cfg.lr = optim_cfg.lr * lr_scale
    optimizer = build_optimizer(model, optim_cfg)
    opts = StepOptions.from_config(cfg.train, next(model.parameters()).device)
    for epoch in range(epochs):
        train_one_epoch(model, loader, optimizer, loss_fn, opts, EpochParts(forward=forward), epoch=epoch)
    model.eval()


def prune_model(
    model_path,
    amount: float = 0.5,
    finetune_epochs: int = 1,
    lr_scale: float = 0.1,
    out=None,
    runs: int = 20,
    threads: int | None = None,
) -> CompressResult:
    """Global magnitude pruning of ``amount`` of the conv/linear weights, fine-tuned, saved as a model file."""
    with _torch_threads(threads):
        return _prune(model_path, amount, finetune_epochs, lr_scale, out, runs)


def _prune(model_path, amount, finetune_epochs, lr_scale, out, runs) -> CompressResult:
    from cnnlab.engine.losses import build_loss

    if not 0 < amount < 1:
        raise CnnlabError(f"--amount must be between 0 and 1 (the fraction of weights set to zero), got {amount}")
    model, meta = load_model(model_path)
    original = copy.deepcopy(model)
    cfg, data, test = run_data(model_path)
    ref = _predictions(torch_logits_fn(original), test[0])
    prune.global_unstructured(prunable(model), pruning_method=prune.L1Unstructured, amount=amount)
    model.eval()
    out = _out_dir(model_path, out, f"pruned-{int(round(amount * 100))}")
    rows = [_model_row("original", original, meta, out / "original", test, ref, runs)]
    rows.append(
        _model_row("pruned, not fine-tuned", _frozen(model, original), meta, out / "no-finetune", test, ref, runs)
    )
    if finetune_epochs > 0:
        _fit(model, data.train, finetune_epochs, cfg, build_loss("cross_entropy"), lr_scale)
    for m, name in prunable(model):
        prune.remove(m, name)  # weight_orig * mask -> weight; the zeros become ordinary stored values
    meta_out = {**meta, "compression": {"method": "magnitude-pruning", "amount": amount, "epochs": finetune_epochs}}
    rows.append(_model_row(f"pruned + {finetune_epochs} ep fine-tune", model, meta_out, out, test, ref, runs))
    meta_out["metrics"] = {"accuracy": rows[-1].accuracy}
    save_model_file(out, model, meta_out)
    _cleanup(out / "original", out / "no-finetune")
    extra = {"amount": amount, "finetune_epochs": finetune_epochs, "sparsity": round(sparsity(model), 4)}
    return _save_result(CompressResult("magnitude pruning", out, rows, extra))


def _frozen(model: nn.Module, like: nn.Module) -> nn.Module:
    """A plain copy of ``like`` holding ``model``'s effective (masked) weights, for measuring and saving.

    (A module under torch's pruning reparametrisation cannot be deep-copied: its ``weight`` is computed.)"""
    state = model.state_dict()
    plain = {}
    for key, value in state.items():
        if key.endswith("_orig"):
            plain[key[: -len("_orig")]] = value * state[key[: -len("_orig")] + "_mask"]
        elif not key.endswith("_mask"):
            plain[key] = value
    out = copy.deepcopy(like)
    out.load_state_dict(plain)
    return out.eval()


def _model_row(name, model, meta, folder: Path, test, ref, runs) -> Row:
    save_model_file(folder, model, meta)
    return measure(name, torch_logits_fn(model), folder / WEIGHTS, nonzero_params(model), test, ref, runs)


def _cleanup(*folders: Path) -> None:
    for folder in folders:
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()


# ---- distillation ----------------------------------------------------------------------------------


# The default student: the seed CNN at a quarter of its widths (about 1/20 of its parameters on 28x28 inputs).
SMALL_SEED_CNN = {"widths": [8, 16, 32], "hidden": [64]}


def distillation_loss(student_logits, teacher_logits, targets, temperature: float, alpha: float) -> torch.Tensor:
    """Hinton et al. (2015): alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, y).

    The T^2 factor keeps the soft-target gradients on the same scale as the hard-label ones.
    """
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / t, 1),
        F.log_softmax(teacher_logits / t, 1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * t * t * soft + (1 - alpha) * F.cross_entropy(student_logits, targets)


class _WithTeacher(nn.Module):
    """The student's forward pass that also runs the teacher on the same batch, so the training step
    (``train_one_epoch``) can distil: the loss reads ``teacher_logits`` of the batch just seen."""

    def __init__(self, student: nn.Module, teacher: nn.Module):
        super().__init__()
        self.student, self.teacher = student, teacher.eval()
        self.teacher_logits: torch.Tensor | None = None

    def forward(self, x: torch.Tensor):
        with torch.no_grad():
            self.teacher_logits = self.teacher(x).float()  # (B, K)
        return self.student(x)


def distill_model(
    model_path,
    student: str = "seed_cnn",
    student_kwargs: dict[str, Any] | None = None,
    epochs: int = 5,
    temperature: float = 4.0,
    alpha: float = 0.7,
    baseline: bool = False,
    out=None,
    runs: int = 20,
    seed: int = 0,
    threads: int | None = None,
) -> CompressResult:
    """Train ``student`` to mimic the model at ``model_path``; save it as a model file and compare.

    The default student is the seed CNN with a quarter of the widths (:data:`SMALL_SEED_CNN`);
    ``baseline=True`` also trains the same student on the labels alone, for comparison.
    """
    with _torch_threads(threads):
        return _distill(model_path, student, student_kwargs, epochs, temperature, alpha, baseline, out, runs, seed)


def _distill(model_path, student, student_kwargs, epochs, temperature, alpha, baseline, out, runs, seed):
    from cnnlab.models import create_model

    teacher, meta = load_model(model_path)
    cfg, data, test = run_data(model_path)
    c, h, _ = meta["input_shape"]
    kwargs = dict(SMALL_SEED_CNN if student_kwargs is None and student == "seed_cnn" else student_kwargs or {})

    def new_student() -> nn.Module:
        torch.manual_seed(seed)
        return create_model(student, num_classes=len(meta["classes"]), in_channels=c, input_size=h, **kwargs)

    ref = _predictions(torch_logits_fn(teacher), test[0])
    out = _out_dir(model_path, out, f"distilled-{student}")
    rows = [_model_row(f"teacher {meta['architecture']}", teacher, meta, out / "teacher", test, ref, runs)]
    student_meta = {
        **{k: v for k, v in meta.items() if k in ("classes", "input_shape", "mean", "std", "decode", "dataset")},
        "architecture": student,
        "kwargs": kwargs,
        "compression": {"method": "distillation", "teacher": meta["architecture"], "T": temperature, "alpha": alpha},
    }
    if baseline:  # the same student trained on the labels alone, for comparison
        alone = new_student()
        _fit(alone, data.train, epochs, cfg, lambda s, y: F.cross_entropy(s, y))
        rows.append(_model_row(f"{student} alone", alone, student_meta, out / "alone", test, ref, runs))
    model = new_student()

    forward = _WithTeacher(model, teacher)

    def kd_loss(s, y):
        return distillation_loss(s, forward.teacher_logits, y, temperature, alpha)

    _fit(model, data.train, epochs, cfg, kd_loss, forward=forward)
    rows.append(_model_row(f"{student} distilled", model, student_meta, out, test, ref, runs))
    student_meta["metrics"] = {"accuracy": rows[-1].accuracy}
    save_model_file(out, model, student_meta)
    _cleanup(*(p for p in (out / "teacher", out / "alone") if p.exists()))
    extra = {"student": student, "epochs": epochs, "T": temperature, "alpha": alpha}
    return _save_result(CompressResult("distillation", out, rows, extra))


__all__ = [
    "quantize_int8",
    "prune_model",
    "distill_model",
    "distillation_loss",
    "format_table",
    "sparsity",
    "Row",
    "CompressResult",
]
