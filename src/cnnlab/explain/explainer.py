"""One loaded model and the analyses of the images shown to it, as JSON-ready dicts (no web code here).

An *analysis* is one image run through the model with every layer recorded
(:func:`cnnlab.explain.hooks.record`); it is kept under a random id in a small LRU cache, so a
click on a unit is a lookup plus a few dozen multiplications, not a new forward pass. The cache is
bounded in count and in bytes, and keeps the model-sized input and a display copy of at most
``THUMB`` pixels a side, never the decoded upload: a 4000x4000 upload costs what a 28x28 one does
once its analysis is done. Activation maps travel as base64 ``uint8`` scaled to each layer's own
[min, max] (the page draws the colour scale with those two numbers); exact values come with the
arithmetic of a clicked unit.

The model is loaded by :func:`load_model_for_explain` and the run's test images are found by
:func:`test_images`: one small function each, so the loading can move to a run object later.
"""

from __future__ import annotations

import base64
import io
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.explain.hooks import LayerRecord, record, softmax_arithmetic, unit_arithmetic, window_of
from cnnlab.serve.predictor import Predictor

THUMB = 192  # largest side of the decoded image as shown on the page
KEEP_BYTES = 256 * 1024 * 1024  # the kept analyses' tensors, together (the newest one is always kept)
NO_TEST_IMAGES = (
    "this server shows uploaded images only: its owner did not share the run's test images "
    "(cnnlab serve --explain-test-images, or cnnlab explain without --no-test-images, shares them)"
)


class NotHookable(CnnlabError):
    """The model is an exported file (ONNX, TorchScript) or a NumPy-engine model: no torch layers to hook."""


def load_model_for_explain(path: str | Path, device: str = "cpu", max_pixels: int | None = None) -> Predictor:
    """A :class:`Predictor` for a run or model folder whose model is a torch ``nn.Module`` (hooks need one)."""
    if Path(path).is_file():  # an exported .onnx / TorchScript file: refused before anything is loaded
        raise NotHookable(
            f"{Path(path).name} is an exported file; explain needs a run or model folder of a torch model "
            "(its layers are hooked), e.g. runs/mnist-seed_cnn"
        )
    predictor = Predictor(path, device=device, max_pixels=max_pixels)
    if predictor.kind != "cnnlab":
        raise NotHookable(
            f"{path} is a {predictor.kind} model; explain needs a run or model folder of a torch model "
            "(its layers are hooked), e.g. runs/mnist-seed_cnn"
        )
    return predictor


@dataclass
class Sample:
    """One of the run's test images: ``load()`` gives what :meth:`Predictor.load` accepts."""

    id: str
    label: int
    load: Callable[[], Any]


def spread_over_classes(labels: Any, limit: int) -> list[int]:
    """Up to ``limit`` positions of ``labels`` taking each class in turn (0, 1, 2, ..., 0, 1, ...), in split order.

    A folder run's test split is sorted by class, so its first images would all be of class 0."""
    seen: Counter[int] = Counter()
    keys = []  # (how many of its class came before it, class, position): sorted, classes take turns
    for k, y in enumerate(np.asarray(labels).tolist()):
        keys.append((seen[int(y)], int(y), k))
        seen[int(y)] += 1
    return [k for _, _, k in sorted(keys)[: max(0, limit)]]


def test_images(path: str | Path, meta: dict[str, Any], limit: int = 24) -> tuple[list[Sample], str]:
    """``limit`` images of the run's test split, every class in turn (:func:`spread_over_classes`), and a note
    ("" or why there are none).

    A run (``runs.open_run``) gives the exact samples of its split.csv, skipped files staying
    skipped; a model folder on its own falls back to the test split of its named dataset."""
    from cnnlab.runs.run import find_run

    run = find_run(path)
    if run is None:
        return _dataset_images(meta, limit)
    try:
        examples = run.examples("test")
        folder = run.data_folder() if run.is_folder else None
    except (CnnlabError, OSError, ValueError) as exc:
        return [], f"the test images of {run.dataset} are not available here ({exc})"
    picked = spread_over_classes(examples.labels, limit)
    ids, labels = [examples.ids[k] for k in picked], [int(examples.labels[k]) for k in picked]
    if folder is not None:  # the file itself, so the page shows its own preprocessing steps
        return [Sample(i, y, lambda f=folder / i: f) for i, y in zip(ids, labels)], ""
    return [Sample(i, y, lambda k=k: examples.images([k])[0]) for k, i, y in zip(picked, ids, labels)], ""


def _dataset_images(meta: dict[str, Any], limit: int) -> tuple[list[Sample], str]:
    """The test split of a named in-memory dataset, for a model folder without its run."""
    from cnnlab.data.datasets import ArrayDataset, load_dataset

    name = str(meta.get("dataset") or "")
    if not name or name.startswith("folder:"):
        return [], "a model folder without its run folder has no test split: upload an image instead"
    try:
        ds = load_dataset(name, root=(meta.get("config") or {}).get("data", {}).get("root"))
    except (CnnlabError, OSError, ValueError) as exc:
        return [], f"the test images of {name} are not available here ({exc})"
    if not isinstance(ds, ArrayDataset):
        return [], f"{name} is not an in-memory dataset"
    picked = spread_over_classes(ds.test_labels, limit)
    return [Sample(str(i), int(ds.test_labels[i]), lambda a=ds.test_images[i]: a) for i in picked], ""


def png_data_url(arr: np.ndarray) -> str:
    """float (H, W, C) in [0, 1] -> a PNG data URL (grey for one channel)."""
    a = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    img = Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def encode_map(t: torch.Tensor) -> tuple[str, float, float]:
    """A tensor -> (base64 of uint8 values scaled to [min, max] in C order, min, max)."""
    lo, hi = float(t.min()), float(t.max())
    scaled = (t - lo) / (hi - lo) if hi > lo else torch.zeros_like(t)
    raw = (scaled * 255).round().to(torch.uint8).cpu().numpy().tobytes()
    return base64.b64encode(raw).decode(), lo, hi


@dataclass
class Analysis:
    id: str
    size: tuple[int, int]  # (W, H) of the decoded image
    shown: np.ndarray  # display copy (h, w, C) in [0, 1], at most THUMB a side
    resized: np.ndarray  # the model's input before normalisation (S, S, C) in [0, 1]
    x: torch.Tensor  # normalised model input (1, C, S, S)
    records: list[LayerRecord]
    logits: torch.Tensor  # (K,)
    label: int | None = None  # the true class of a test image

    @property
    def nbytes(self) -> int:
        """Bytes held by its arrays and tensors (the recorded layer inputs and outputs dominate)."""
        tensors = [self.x, self.logits, *(t for r in self.records for t in (r.x, r.y))]
        return self.shown.nbytes + self.resized.nbytes + sum(t.numel() * t.element_size() for t in tensors)


def thumbnail(image: np.ndarray) -> np.ndarray:
    """float (H, W, C) in [0, 1] -> the display copy, at most THUMB a side with its aspect kept.

    Resized by torch (bilinear, antialiased) straight from the float image: no full-size uint8 or
    rounded copy of a large upload is made on the way (those cost 2.5x the decoded image)."""
    h, w = image.shape[:2]
    if max(h, w) <= THUMB:
        return np.ascontiguousarray(image, dtype=np.float32)
    size = (max(1, round(h * THUMB / max(h, w))), max(1, round(w * THUMB / max(h, w))))
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]  # (1, C, H, W)
    small = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return small[0].permute(1, 2, 0).clamp_(0, 1).contiguous().numpy()  # (h, w, C)


class Explainer:
    """A model, its preprocessing, and the last ``keep`` analyses within ``keep_bytes`` (thread-safe).

    ``test_images=False`` shows uploaded images only: the run's test images (and their file names)
    are not handed out (``cnnlab serve --explain`` without ``--explain-test-images``)."""

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        max_pixels: int | None = None,
        keep: int = 16,
        *,
        keep_bytes: int = KEEP_BYTES,
        test_images: bool = True,
    ):
        self.path = Path(path)
        self.predictor = load_model_for_explain(path, device, max_pixels)
        self.model = self.predictor.model.eval()
        self.keep, self.keep_bytes, self.test_images = keep, keep_bytes, test_images
        self.kept_bytes = 0
        self._analyses: OrderedDict[str, Analysis] = OrderedDict()
        self._lock = Lock()
        self._samples: tuple[list[Sample], str] | None = None
        self.layers = self._describe_layers()

    def _describe_layers(self) -> list[dict[str, Any]]:
        records, _ = record(self.model, torch.zeros(1, *self.predictor.input_shape, device=self.predictor.device))
        return [self._layer_info(r) for r in records]

    @staticmethod
    def _layer_info(r: LayerRecord) -> dict[str, Any]:
        info = {"name": r.name, "type": r.type, "shape": list(r.y.shape), "params": r.params, "rf": r.rf}
        # the page slides ``window`` over the output of layer ``source`` (None: made between modules)
        return {**info, "in_shape": list(r.x.shape), "source": r.source, "window": window_of(r.module)}

    def class_name(self, k: int) -> str:
        classes = self.predictor.classes
        return classes[k] if 0 <= k < len(classes) else f"label {k} (not a class of this model)"

    def model_info(self) -> dict[str, Any]:
        meta = self.predictor.public_meta()
        return {**meta, "layers": [{**info, "index": i + 1} for i, info in enumerate(self.layers)]}

    def samples(self, limit: int = 24) -> tuple[list[Sample], str]:
        if not self.test_images:
            return [], NO_TEST_IMAGES
        if self._samples is None:
            self._samples = test_images(self.path, self.predictor.meta, limit)
        return self._samples

    # ---- analyses ---------------------------------------------------------------------------
    def analyse(self, image: np.ndarray, label: int | None = None) -> Analysis:
        """Decoded (H, W, C) in [0, 1] -> an Analysis, kept in the cache (the decoded image itself is not)."""
        p = self.predictor
        resized = p.to_input(image)  # (C, S, S) in [0, 1]
        x = (resized[None].to(p.device) - p.mean) * p.inv_std  # (1, C, S, S): Predictor.preprocess, one resize
        records, logits = record(self.model, x)
        if not torch.isfinite(logits).all():
            raise CnnlabError("the model's output for this image is not finite (NaN or inf): did training diverge?")
        h, w = image.shape[:2]
        shown, resized = thumbnail(image), resized.permute(1, 2, 0).cpu().numpy()
        analysis = Analysis(uuid.uuid4().hex, (w, h), shown, resized, x, records, logits.cpu(), label)
        self._keep(analysis)
        return analysis

    def _keep(self, analysis: Analysis) -> None:
        """Add to the cache; drop the oldest beyond ``keep`` analyses or ``keep_bytes`` (never the newest)."""
        with self._lock:
            self._analyses[analysis.id] = analysis
            self.kept_bytes += analysis.nbytes
            while len(self._analyses) > 1 and (len(self._analyses) > self.keep or self.kept_bytes > self.keep_bytes):
                _, old = self._analyses.popitem(last=False)
                self.kept_bytes -= old.nbytes

    def get(self, analysis_id: str) -> Analysis:
        with self._lock:
            if analysis_id not in self._analyses:
                raise KeyError(analysis_id)
            self._analyses.move_to_end(analysis_id)
            return self._analyses[analysis_id]

    def analysis_json(self, a: Analysis, topk: int = 5) -> dict[str, Any]:
        """Everything the page draws after an upload: preprocessing steps, every layer's maps, the output."""
        layers = [self._input_layer(a)]
        for i, r in enumerate(a.records):
            maps, lo, hi = encode_map(r.y)
            layers.append({**self._layer_info(r), "index": i + 1, "jump": r.jump, "min": lo, "max": hi, "maps": maps})
        probs = torch.softmax(a.logits.double(), 0)
        top = probs.topk(min(topk, len(probs)))
        classes = self.predictor.classes
        return {
            "id": a.id,
            "steps": self._steps(a),
            "layers": layers,
            "classes": classes,
            "softmax": softmax_arithmetic(a.logits),
            "top": [{"index": int(k), "label": classes[k], "probability": float(p)} for p, k in zip(*top)],
            "label": None if a.label is None else {"index": a.label, "name": self.class_name(a.label)},
        }

    def _input_layer(self, a: Analysis) -> dict[str, Any]:
        maps, lo, hi = encode_map(a.x[0])
        shape = list(a.x.shape[1:])
        info = {"index": 0, "name": "input", "type": "normalised input", "shape": shape, "params": 0, "rf": 1}
        return {**info, "jump": 1, "min": lo, "max": hi, "maps": maps}

    def _steps(self, a: Analysis) -> list[dict[str, Any]]:
        p = self.predictor
        (w, h), mode = a.size, "grey (1 channel, BT.601 luma)" if p.channels == 1 else "RGB (3 channels)"
        # the display copy is small; the model got the full decoded image
        return [
            {"name": "decoded", "text": f"{w}x{h}, {mode}, values / 255 -> [0, 1]", "png": png_data_url(a.shown)},
            {"name": "resized", "text": f"{p.size}x{p.size}, bilinear, antialiased", "png": png_data_url(a.resized)},
            {
                "name": "normalised",
                "text": "(x - mean) / std per channel",
                "mean": p.meta["mean"],
                "std": p.meta["std"],
                "min": float(a.x.min()),
                "max": float(a.x.max()),
            },
        ]

    def unit_json(self, a: Analysis, layer: int, c: int, i: int = 0, j: int = 0) -> dict[str, Any]:
        """The arithmetic of one unit (layer 0 is the normalised input) and its receptive field box."""
        size = self.predictor.size
        if not 0 <= layer <= len(a.records):
            raise CnnlabError(f"layer {layer} does not exist; layers are 0..{len(a.records)}")
        if layer == 0:
            if not (0 <= c < a.x.shape[1] and 0 <= i < size and 0 <= j < size):
                raise CnnlabError(f"unit ({c}, {i}, {j}) is outside the input of shape {list(a.x.shape[1:])}")
            out = {"kind": "input", "formula": "(pixel - mean) / std", "value": float(a.x[0, c, i, j])}
            return {**out, "layer": "input", "index": [c, i, j], "box": [i, j, i, j]}
        r = a.records[layer - 1]
        out = unit_arithmetic(r, c, i, j)
        return {**out, "box": list(r.box(i, j, size)), "rf": r.rf, "rf_exact": r.rf_exact}

    def attribution_json(self, a: Analysis, method: str, target: int | None) -> dict[str, Any]:
        """Grad-CAM (last conv layer) or vanilla-gradient saliency for class ``target`` (default: predicted)."""
        from cnnlab.viz.inspect import grad_cam, saliency

        if target is not None and not 0 <= target < len(self.predictor.classes):
            raise CnnlabError(f"class {target} does not exist; classes are 0..{len(self.predictor.classes) - 1}")
        if method == "gradcam":
            if not any(isinstance(m, torch.nn.Conv2d) for m in self.model.modules()):
                raise CnnlabError("Grad-CAM needs a conv layer; this model has none (try saliency)")
            heat, t = grad_cam(self.model, a.x, target)
        elif method == "saliency":
            heat, t = saliency(self.model, a.x, target)
        else:
            raise CnnlabError(f"unknown method {method!r}; use gradcam or saliency")
        maps, lo, hi = encode_map(torch.as_tensor(np.ascontiguousarray(heat), dtype=torch.float32))
        info = {"method": method, "target": t, "label": self.predictor.classes[t], "size": list(heat.shape)}
        return {**info, "map": maps, "min": lo, "max": hi}


__all__ = [
    "Explainer",
    "NotHookable",
    "Analysis",
    "Sample",
    "test_images",
    "spread_over_classes",
    "load_model_for_explain",
    "encode_map",
]
