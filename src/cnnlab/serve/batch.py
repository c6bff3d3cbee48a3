"""Prediction over large folders: a streamed file walk, decoding on worker threads, batched inference on
torch, ONNX Runtime or OpenVINO, and results handed on as they come.

``cnnlab predict MODEL FOLDER`` must handle 100,000 images without holding them, their results or
even their paths in memory: the folder is walked lazily (each directory's entries sorted, so the
order is the same as a sorted listing), ``workers`` threads decode batches ahead of the model
(Pillow and the resize release the GIL, and so does the runtime while it infers), at most
``workers + 2`` batches are in flight, and every result goes to a writer callback before the next
batch. Preprocessing is :class:`~cnnlab.serve.predictor.Predictor`'s (the evaluation path): an image
that already has the model's input size skips the resize, which is the identity then. A file that
cannot be read is reported and skipped. When the one folder given has one subfolder per class of
the model, each image's true class is its subfolder's name and the summary has the accuracy and the
confusion matrix (only the (true, predicted) pairs are kept: two small integers per image).
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.folder import IMAGE_EXTENSIONS, is_ignored
from cnnlab.data.images import ImageReadError, open_image, to_array, uint8_pixels
from cnnlab.errors import CnnlabError
from cnnlab.evaluation.metrics import classification_metrics
from cnnlab.files import tables
from cnnlab.files.atomic import atomic_write
from cnnlab.serve.predictor import Predictor

# --backend NAME -> the suffix of the exported file that runtime runs ("torch": the model folder itself)
BACKENDS = {"torch": None, "onnxruntime": ".onnx", "openvino": ".xml"}
_OWN_BACKEND = {".onnx": "onnxruntime", ".xml": "openvino", ".pt": "torch", ".pth": "torch", ".ts": "torch"}


# ---- finding the files -----------------------------------------------------------------------------
def _walk(folder: str | Path) -> Iterator[str]:
    """Image files under ``folder``, depth first, each directory's entries in sorted order (lazy).
    Paths are strings: building a ``Path`` per file cost more than decoding a 32x32 JPEG."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        if is_ignored(e.name):
            continue
        if e.is_dir(follow_symlinks=False):
            yield from _walk(e.path)
        elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file():
            yield e.path


def _expand(pattern: str | Path) -> Iterator[str]:
    p = Path(pattern).expanduser()
    if p.is_dir():
        yield from _walk(p)
    elif p.is_file():
        yield str(p)
    elif any(ch in str(pattern) for ch in "*?["):
        yield from sorted(f for f in glob.iglob(str(p), recursive=True) if os.path.isfile(f))


def check_inputs(patterns: Iterable[str | Path]) -> list[str | Path]:
    """Refuse, before any work, a path that does not exist, a pattern that matches nothing, an empty folder."""
    patterns = list(patterns)
    for pat in patterns:
        p = Path(pat).expanduser()
        if p.is_dir():
            if next(_walk(p), None) is None:
                raise CnnlabError(f"folder {p} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        elif not p.is_file():
            if not any(ch in str(pat) for ch in "*?["):
                raise CnnlabError(f"{pat}: no such file or folder")
            if next(_expand(pat), None) is None:
                raise CnnlabError(f"the pattern {pat!r} matches no files")
    return patterns


def iter_images(patterns: Iterable[str | Path]) -> Iterator[str]:
    """Every image file the patterns name, in order; a file named twice is predicted once."""
    patterns = list(patterns)
    if len(patterns) == 1:  # the common case, a folder: nothing to de-duplicate, nothing held
        yield from _expand(patterns[0])
        return
    seen: set[str] = set()
    for pat in patterns:
        for f in _expand(pat):
            if f not in seen:
                seen.add(f)
                yield f


def count_images(patterns: Iterable[str | Path]) -> int:
    return sum(1 for _ in iter_images(patterns))


def class_folder(patterns: list[str | Path], classes: list[str]) -> Path | None:
    """The folder whose subfolders name the true classes: one folder given, and every subfolder
    (hidden ones aside) named like a class of the model. None otherwise."""
    if len(patterns) != 1 or not Path(patterns[0]).is_dir():
        return None
    root = Path(patterns[0]).expanduser()
    subs = [e.name for e in os.scandir(root) if e.is_dir() and not is_ignored(e.name)]
    return root if subs and set(subs) <= set(classes) else None


# ---- the backend ------------------------------------------------------------------------------------
def backend_model(model: str | Path, backend: str, workdir: Path, log: Callable[[str], None]) -> Path:
    """The file the chosen runtime runs: the model itself, its exported file when that is at least as
    new as the weights, or a fresh export into ``workdir`` (parity-checked; nothing written in the run)."""
    p = Path(model)
    if backend not in ("auto", *BACKENDS):
        raise CnnlabError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    own = _OWN_BACKEND.get(p.suffix.lower()) if p.is_file() else "torch"
    if backend in ("auto", own):
        return p
    if p.is_file():
        raise CnnlabError(f"{p.name} runs on {own}; give the run or model folder to choose --backend {backend}")
    from cnnlab.runs.model_file import _model_folder

    folder = _model_folder(p)
    suffix = BACKENDS[backend]
    exported = folder / f"model{suffix}"
    weights = folder / "weights.safetensors"
    if exported.is_file() and weights.is_file() and exported.stat().st_mtime >= weights.stat().st_mtime:
        return exported
    target = workdir / f"model{suffix}"
    if backend == "onnxruntime":
        from cnnlab.export.onnx import export_onnx

        _, report = export_onnx(p, target, exporter="legacy", parity_n=16)
    else:
        from cnnlab.export.openvino import export_openvino

        _, report, _ = export_openvino(p, target, exporter="legacy", parity_n=16)
    log(f"exported for {backend} (not saved; 'cnnlab export' keeps a copy): {report.line()}")
    return target


# ---- decoding and inference -------------------------------------------------------------------------
def _decode(predictor, paths: list[str]) -> tuple[list[str], np.ndarray | None, list[tuple[str, ImageReadError]]]:
    """(paths decoded, (n, C, S, S) float32 in [0, 1] not yet normalised, errors) for one batch.

    The rule is Predictor.load + Predictor.to_input; an RGB/L image already at the input size stays
    uint8 until the whole batch is converted (the same float32 ``/ 255``, bit for bit, done once)."""
    ok, arrays, errors = [], [], []
    s, channels = predictor.size, predictor.channels
    for path in paths:
        try:
            img = open_image(path, max_pixels=predictor.max_pixels)
            u8 = uint8_pixels(img, channels) if img.size == (s, s) and not predictor.resize_size else None
            arrays.append(u8 if u8 is not None else predictor.to_input(to_array(img, channels, name=path)).numpy())
        except ImageReadError as exc:
            errors.append((path, exc))
            continue
        ok.append(path)
    if not arrays:
        return ok, None, errors
    if all(a.dtype == np.uint8 for a in arrays):  # (n, S, S, C) bytes -> (n, C, S, S) floats in one pass
        return ok, np.ascontiguousarray((np.stack(arrays).astype(np.float32) / 255.0).transpose(0, 3, 1, 2)), errors
    x = np.stack([(a.astype(np.float32) / 255.0).transpose(2, 0, 1) if a.dtype == np.uint8 else a for a in arrays])
    return ok, x, errors


@dataclass
class BatchSummary:
    """What a batch prediction did: counts, time, and the metrics of a class-per-folder run."""

    predicted: int = 0
    errors: int = 0
    seconds: float = 0.0
    labelled_root: str | None = None
    metrics: dict[str, Any] | None = None
    unlabelled: int = 0  # images outside the class subfolders of a labelled folder
    backend: str = ""  # the predictor's kind: cnnlab (torch), onnx, openvino, torchscript, numpy
    _pairs: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def images_per_second(self) -> float:
        return self.predicted / self.seconds if self.seconds > 0 else 0.0


def _chunks(it: Iterator[str], n: int) -> Iterator[list[str]]:
    while chunk := [p for _, p in zip(range(n), it)]:
        yield chunk


def predict_stream(
    predictor,
    patterns: list[str | Path],
    *,
    batch_size: int = 64,
    workers: int = 2,
    topk: int = 5,
    on_result: Callable[[dict], None],
    on_error: Callable[[Path, ImageReadError], None],
    progress: Callable[[int], None] | None = None,
) -> BatchSummary:
    """Predict every image ``patterns`` name, handing each result dict (``path``, ``label``, ``index``,
    ``probability``, ``top``; ``true_label`` in a class-per-folder run) to ``on_result`` in order."""
    root = class_folder(patterns, predictor.classes)
    summary = BatchSummary(labelled_root=str(root) if root else None)
    index = {c: i for i, c in enumerate(predictor.classes)}
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cnnlab-decode") as pool:
        pending: deque = deque()
        chunks = _chunks(iter_images(patterns), batch_size)
        for chunk in chunks:
            pending.append(pool.submit(_decode, predictor, chunk))
            if len(pending) >= max(1, workers) + 2:  # bounded read-ahead: memory stays a few batches
                _finish(pending.popleft().result(), predictor, summary, root, index, topk, on_result, on_error)
                _tick(progress, summary)
        while pending:
            _finish(pending.popleft().result(), predictor, summary, root, index, topk, on_result, on_error)
            _tick(progress, summary)
    summary.seconds = time.perf_counter() - start
    if root is not None and summary._pairs:
        pairs = np.concatenate(summary._pairs)  # (N, 2): true, predicted
        summary.metrics = classification_metrics(pairs[:, 0], pairs[:, 1], None, predictor.classes)
    return summary


def _tick(progress, summary: BatchSummary) -> None:
    if progress is not None:
        progress(summary.predicted + summary.errors)


def _finish(decoded, predictor, summary: BatchSummary, root, index, topk, on_result, on_error) -> None:
    """Normalise and infer one decoded batch, then hand its results and errors on."""
    paths, x, errors = decoded
    for path, exc in errors:
        summary.errors += 1
        on_error(Path(path), exc)
    if x is None:
        return
    mean, inv_std = predictor.mean.cpu().numpy(), predictor.inv_std.cpu().numpy()
    xb = torch.from_numpy((x - mean) * inv_std).to(predictor.device)  # (B, C, S, S), as Predictor.preprocess
    rows = predictor.format(predictor.probabilities(xb), topk)
    pairs = []
    prefix = os.path.join(str(root), "") if root is not None else None
    for path, row in zip(paths, rows):
        result = {"path": path, **row}
        if prefix is not None:
            parts = path[len(prefix) :].split(os.sep) if path.startswith(prefix) else []
            if len(parts) >= 2 and parts[0] in index:
                result["true_label"] = parts[0]
                pairs.append((index[parts[0]], row["index"]))
            else:
                summary.unlabelled += 1
        on_result(result)
    summary.predicted += len(rows)
    if pairs:
        summary._pairs.append(np.asarray(pairs, dtype=np.int32))


# ---- writers: one result at a time, nothing kept ---------------------------------------------------
class CsvWriter:
    """One row per image and rank: path, rank, label, index, probability (and true_label when known)."""

    def __init__(self, stream, labelled: bool = False):
        self.w, self.labelled = tables.writer(stream, lineterminator="\n"), labelled  # cells escaped against formulas
        self.w.writerow(["path", "rank", "label", "index", "probability", *(["true_label"] if labelled else [])])

    def write(self, r: dict) -> None:
        extra = [r.get("true_label", "")] if self.labelled else []
        for rank, t in enumerate(r["top"], 1):
            self.w.writerow([r["path"], rank, t["label"], t["index"], f"{t['probability']:.6f}", *extra])

    def close(self) -> None:
        pass


class JsonLinesWriter:
    """One JSON object per line and image."""

    def __init__(self, stream, labelled: bool = False):
        self.stream = stream

    def write(self, r: dict) -> None:
        self.stream.write(json.dumps(r) + "\n")

    def close(self) -> None:
        pass


class JsonWriter:
    """One JSON array, written element by element (the array is never built in memory)."""

    def __init__(self, stream, labelled: bool = False):
        self.stream, self.first = stream, True
        stream.write("[")

    def write(self, r: dict) -> None:
        self.stream.write(("\n  " if self.first else ",\n  ") + json.dumps(r))
        self.first = False

    def close(self) -> None:
        self.stream.write("\n]\n" if not self.first else "]\n")


class TableWriter:
    """A fixed-width table for people; the path column is as wide as the first batch's paths."""

    def __init__(self, stream, labelled: bool = False):
        self.stream, self.labelled, self.width = stream, labelled, None

    def write(self, r: dict) -> None:
        if self.width is None:
            self.width = max(len("path"), len(r["path"]) + 2)
            true = f"{'true':<12} " if self.labelled else ""
            self.stream.write(f"{'path':<{self.width}}  {true}{'label':<12} {'prob':>6}  top-k\n")
        top = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"])
        true = f"{r.get('true_label', '')[:12]:<12} " if self.labelled else ""
        self.stream.write(f"{r['path']:<{self.width}}  {true}{r['label'][:12]:<12} {r['probability']:6.3f}  {top}\n")

    def close(self) -> None:
        pass


WRITERS = {"table": TableWriter, "csv": CsvWriter, "jsonl": JsonLinesWriter, "json": JsonWriter}
_SUFFIX_FORMAT = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".txt": "table"}


def output_format(fmt: str | None, output: str | Path | None) -> str:
    """The format asked for, else the output file's suffix says it, else a table."""
    if fmt:
        return fmt
    if output is None:
        return "table"
    suffix = Path(output).suffix.lower()
    if suffix not in _SUFFIX_FORMAT:
        raise CnnlabError(
            f"{output}: say the format with --format (csv, jsonl, json, table) or end the name in .csv/.jsonl"
        )
    return _SUFFIX_FORMAT[suffix]


def default_threads(workers: int) -> int:
    """Inference threads that leave one core to each decoding worker (at least 1)."""
    return max(1, (os.cpu_count() or 1) - workers)


@contextmanager
def _sink(output: str | Path | None, stream):
    """The text stream results go to: ``output`` through the atomic writer (complete or absent), else ``stream``."""
    if output is None:
        yield stream
        return
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(output, "w", encoding="utf-8", newline="") as fh:  # /dev/stdout or a FIFO: written in place
        yield fh


def predict_files(
    model: str | Path,
    paths: Iterable[str | Path],
    *,
    output: str | Path | None = None,
    stream=None,
    fmt: str | None = None,
    backend: str = "auto",
    device: str = "cpu",
    batch_size: int = 64,
    workers: int = 2,
    topk: int = 5,
    trust_torchscript: bool = False,
    threads: int | None = None,
    log: Callable[[str], None] = lambda s: None,
    on_result: Callable[[dict], None] | None = None,
    on_error: Callable[[Path, ImageReadError], None] = lambda path, exc: None,
    progress: Callable[[int], None] | None = None,
) -> BatchSummary:
    """Predict image files, folders and globs with ``model`` on ``backend``, streaming the results to
    ``output`` (a file, written atomically), ``stream`` (e.g. stdout) and/or ``on_result``.

    ``threads`` are ONNX Runtime's / OpenVINO's inference threads; by default the cores the decoding
    workers leave free (at least 1): a runtime that spins on every core starves the workers that
    feed it, which on 2 cores halved the throughput. Torch's threads are the caller's to set."""
    if batch_size < 1 or workers < 1 or topk < 1:
        raise CnnlabError(f"batch size, workers and top-k must be at least 1, got {batch_size}, {workers}, {topk}")
    patterns = check_inputs(paths)
    fmt = output_format(fmt, output)
    if fmt not in WRITERS:
        raise CnnlabError(f"unknown format {fmt!r}; choose {', '.join(WRITERS)}")
    with tempfile.TemporaryDirectory(prefix="cnnlab-predict-") as tmp:
        model_file = backend_model(model, backend, Path(tmp), log)
        threads = threads or default_threads(workers)
        predictor = Predictor(
            model_file, device=device, batch_size=batch_size, trust_torchscript=trust_torchscript, threads=threads
        )
        labelled = class_folder(patterns, predictor.classes) is not None
        with _sink(output, stream) as fh:
            writer = WRITERS[fmt](fh, labelled) if fh is not None else None
            sinks = [f for f in (writer.write if writer else None, on_result) if f is not None]

            def emit(r: dict) -> None:
                for f in sinks:
                    f(r)

            summary = predict_stream(
                predictor, patterns, batch_size=batch_size, workers=workers, topk=topk,
                on_result=emit, on_error=on_error, progress=progress,
            )  # fmt: skip
            if writer is not None:
                writer.close()
    summary.backend = predictor.kind
    return summary


@dataclass
class PredictResult:
    """What :func:`predict` returns: the rows (None when they went to ``output``) and the summary."""

    results: list[dict] | None
    summary: BatchSummary

    @property
    def metrics(self) -> dict[str, Any] | None:
        """Accuracy, per-class scores and the confusion matrix of a class-per-folder run."""
        return self.summary.metrics


def predict(
    model: str | Path,
    paths: str | Path | Iterable[str | Path],
    *,
    output: str | Path | None = None,
    format: str | None = None,
    backend: str = "auto",
    batch_size: int = 64,
    workers: int = 2,
    topk: int = 5,
    device: str = "cpu",
    trust_torchscript: bool = False,
    progress: bool = False,
) -> PredictResult:
    """``cnnlab predict`` from Python: predict image files, folders and globs.

    With ``output`` the rows stream to that file (CSV, JSON Lines or JSON by its suffix or ``format``;
    written atomically) and nothing is kept; without it they are returned as a list. On a folder with
    one subfolder per class, ``result.metrics`` holds the accuracy and the confusion matrix.

    Example::

        r = cnnlab.predict("runs/cifar", "photos/test", output="preds.csv", backend="onnxruntime")
        r.summary.images_per_second, r.metrics["accuracy"]
    """
    from cnnlab.runs.builtin import resolve_run_path

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    rows: list[dict] | None = [] if output is None else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=count_images(check_inputs(paths)), unit="img", desc="predict")
    try:
        summary = predict_files(
            resolve_run_path(model), paths, output=output, fmt=format, backend=backend, batch_size=batch_size,
            workers=workers, topk=topk, device=device, trust_torchscript=trust_torchscript,
            on_result=rows.append if rows is not None else None,
            progress=(lambda n: bar.update(n - bar.n)) if bar is not None else None,
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    return PredictResult(rows, summary)


__all__ = [
    "predict",
    "PredictResult",
    "BACKENDS",
    "WRITERS",
    "output_format",
    "BatchSummary",
    "backend_model",
    "check_inputs",
    "class_folder",
    "count_images",
    "iter_images",
    "predict_stream",
    "predict_files",
]
