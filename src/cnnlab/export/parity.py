"""Parity checks: does an exported or compressed model still give the original model's answers?

Users lose trust in exports that silently disagree with the original (Ultralytics issue #5016
reported 46% top-1 agreement after an export). After every export cnnlab runs both models on the
same N inputs and reports top-1 agreement and the largest absolute difference between their
softmax probabilities; the export fails (``CnnlabError``, non-zero exit in the CLI) when agreement
is below 100% or the difference above 1e-4. The inputs are real images from the model's own
dataset (test split, preprocessed exactly as evaluation does) when that dataset can be loaded
here, otherwise standard-normal tensors (the distribution normalised inputs have).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.loaders import describe_resize
from cnnlab.data.tta import main_logits
from cnnlab.errors import CnnlabError

MAX_PROB_DIFF = 1e-4  # largest allowed |p_ref - p_exported| over all images and classes
LogitsFn = Callable[[np.ndarray], np.ndarray]  # normalised (B, C, H, W) float32 -> logits (B, K)


@dataclass
class ParityReport:
    n: int
    agreement: float  # fraction of images with the same top-1 class
    max_prob_diff: float
    source: str  # where the inputs came from
    tolerance: float = MAX_PROB_DIFF

    @property
    def ok(self) -> bool:
        return self.agreement == 1.0 and self.max_prob_diff <= self.tolerance

    def line(self) -> str:
        verdict = "OK" if self.ok else "FAILED"
        return (
            f"parity on {self.n} {self.source}: top-1 agreement {self.agreement:.2%}, "
            f"max |prob diff| {self.max_prob_diff:.2e} (limit {self.tolerance:.0e}) -> {verdict}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "agreement": self.agreement,
            "max_prob_diff": self.max_prob_diff,
            "source": self.source,
            "ok": self.ok,
        }


def parity_inputs(meta: dict[str, Any], n: int = 64, seed: int = 0, model_path=None) -> tuple[np.ndarray, str]:
    """N normalised inputs (N, C, H, W) float32 and a description of where they came from: the first N
    images of the run's own test split (split.csv) when ``model_path`` lies in a run folder, else the
    test split of the model's named dataset, else random inputs."""
    real = _run_inputs(model_path, n) if model_path is not None else None
    real = real if real is not None else _dataset_inputs(meta, n)
    if real is not None:
        return real
    c, h, w = meta["input_shape"]
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=gen).numpy(), "random standard-normal inputs (dataset not available)"


def _run_inputs(model_path, n: int) -> tuple[np.ndarray, str] | None:
    """The first N images of the test split of the run that ``model_path`` belongs to; None if none."""
    from cnnlab.runs.run import find_run

    run = find_run(model_path)
    if run is None:
        return None
    try:
        test = run.examples("test")
        x = test.inputs(np.arange(min(n, len(test))))
    except (CnnlabError, OSError):  # data moved away since training: the dataset or random inputs instead
        return None
    label = f"{_without_path(run.dataset)} {Path(run.data_folder()).name}" if run.is_folder else run.dataset
    return x, f"test images of {label} (the run's split.csv)"


def _dataset_inputs(meta: dict[str, Any], n: int) -> tuple[np.ndarray, str] | None:
    """The first N test images of the model's dataset, preprocessed as evaluation does; None if unavailable."""
    from cnnlab.data.datasets import load_dataset
    from cnnlab.data.pipeline import eval_loader

    name = meta.get("dataset")
    if not name:
        return None
    root = (meta.get("config") or {}).get("data", {}).get("root")
    try:
        ds = load_dataset(name, root=root)
        loader = eval_loader(ds, "test", meta, "cpu", batch_size=n, num_workers=0)
        x, _ = next(iter(loader))
    except (CnnlabError, OSError, StopIteration, ValueError):
        return None
    return x.numpy().astype(np.float32), f"test images of {_without_path(name)}"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def run_batched(fn: LogitsFn, x: np.ndarray, batch: int) -> np.ndarray:
    """Apply ``fn`` in chunks of ``batch`` (exercises the dynamic batch axis with a ragged last chunk)."""
    return np.concatenate([np.asarray(fn(x[i : i + batch])) for i in range(0, len(x), batch)])


def compare(
    reference: LogitsFn,
    candidate: LogitsFn,
    x: np.ndarray,
    source: str = "inputs",
    batch: int = 7,
    tolerance: float = MAX_PROB_DIFF,
) -> ParityReport:
    """Run both models on ``x`` and measure top-1 agreement and the largest probability difference.

    The candidate runs in chunks of ``batch`` (7 by default: not the export's example batch, and a
    ragged last chunk), so a batch size frozen into the graph shows up here as an error.
    """
    p_ref = softmax(run_batched(reference, x, 64))
    p_new = softmax(run_batched(candidate, x, batch))
    if p_ref.shape != p_new.shape:
        raise CnnlabError(f"the exported model gives outputs of shape {p_new.shape}, the original {p_ref.shape}")
    agreement = float((p_ref.argmax(1) == p_new.argmax(1)).mean())
    diff = float(np.abs(p_ref - p_new).max()) if p_ref.size else 0.0
    return ParityReport(n=len(x), agreement=agreement, max_prob_diff=diff, source=source, tolerance=tolerance)


def require(report: ParityReport, what: str) -> ParityReport:
    """Raise a CnnlabError naming ``what`` when the report fails; return it otherwise."""
    if not report.ok:
        raise CnnlabError(
            f"{what} does not reproduce the original model: {report.line()}. Do not use it; report the "
            "model architecture and versions (torch, onnx/onnxruntime) so the export can be fixed."
        )
    return report


def public_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """What an exported file carries and the server shows: enough to preprocess and name the classes,
    but no file paths, library versions or training config."""
    dataset = str(meta.get("dataset") or "")
    return {
        "architecture": meta["architecture"],
        "classes": list(meta["classes"]),
        "input_shape": list(meta["input_shape"]),  # [C, H, W]
        "mean": list(meta["mean"]),  # per channel, on [0, 1] pixels
        "std": list(meta["std"]),
        "decode": meta.get("decode", "cnnlab.data.images v1"),
        "resize": describe_resize(meta["input_shape"][1], meta.get("resize_size")),
        "resize_size": meta.get("resize_size"),  # set: shorter side to it, then the central crop
        "input_layout": "NCHW float32, (pixel/255 - mean) / std",
        "dataset": _without_path(dataset),
        "metrics": {k: v for k, v in (meta.get("metrics") or {}).items() if isinstance(v, (int, float))},
    }


def _without_path(dataset: str) -> str:
    """``folder`` / ``csv`` for a user's files (``folder:PATH``, ``csv:FILE``): no path leaves with a model."""
    from cnnlab.data.datasets import file_data

    return dataset.partition(":")[0] if file_data(dataset) else dataset


def torch_logits_fn(model: torch.nn.Module) -> LogitsFn:
    """A NumPy-in, NumPy-out wrapper around an eval-mode torch model."""

    @torch.no_grad()
    def fn(x: np.ndarray) -> np.ndarray:
        out = model(torch.from_numpy(np.ascontiguousarray(x)))
        return main_logits(out).numpy()

    return fn


__all__ = [
    "ParityReport",
    "MAX_PROB_DIFF",
    "parity_inputs",
    "compare",
    "require",
    "softmax",
    "torch_logits_fn",
    "public_meta",
]
