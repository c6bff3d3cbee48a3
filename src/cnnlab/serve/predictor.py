"""Predictions from a saved model file, with the same preprocessing as evaluation (no web dependencies).

Seed 002's REST example loads a pickled model and leaves "preprocess image..." as a comment; the
preprocessing is where served predictions drift from evaluated ones. Here it comes from
``model.json`` alone: every image (path, bytes, PIL image or array) is decoded by the one rule of
:mod:`cnnlab.data.images`, resized like :class:`cnnlab.data.loaders.FolderImages` (bilinear,
antialiased, ``align_corners=False``) to the model's square input size, clamped to [0, 1] and
normalised with the stored mean/std. So a file predicted here gets exactly the logits that
``cnnlab evaluate`` computed for it. ``cnnlab predict``, ``cnnlab serve`` and the exporters'
parity checks all go through this class.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlab.data.folder import IMAGE_EXTENSIONS, is_ignored
from cnnlab.data.images import MAX_IMAGE_PIXELS, ImageReadError, open_image, to_array
from cnnlab.data.loaders import fit_to_input
from cnnlab.data.tta import main_logits
from cnnlab.devices import resolve_device
from cnnlab.errors import CnnlabError
from cnnlab.export.parity import public_meta
from cnnlab.readers import read_json
from cnnlab.runs.builtin import resolve_run_path
from cnnlab.runs.meta import META, check_model_meta
from cnnlab.runs.model_file import load_model
from cnnlab.runs.run import NumpyForward

ImageLike = str | Path | bytes | Image.Image | np.ndarray


def decode_bytes(data: bytes, channels: int, *, name: str = "<upload>", max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file's bytes to float32 (H, W, channels) in [0, 1] by the shared rule."""
    return to_array(open_image(data, name=name, max_pixels=max_pixels), channels, name=name)


def array_to_float(arr: np.ndarray, channels: int) -> np.ndarray:
    """A NumPy image (H, W) or (H, W, C) -> float32 (H, W, channels) in [0, 1].

    uint8 arrays are divided by 255 and uint16 by 65535 (as the file rule does); float arrays are
    taken to be in [0, 1]. Channel changes use the same repeat / BT.601 luma rule as files.
    """
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise CnnlabError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {a.shape}")
    if a.dtype == np.uint16:
        if a.shape[2] != 1:
            raise CnnlabError("uint16 image arrays must have one channel")
        return to_array(Image.fromarray(np.ascontiguousarray(a[..., 0])), channels)  # mode I;16
    if a.dtype == np.uint8:  # Pillow picks L, RGB or RGBA from the shape
        return to_array(Image.fromarray(np.ascontiguousarray(a[..., 0] if a.shape[2] == 1 else a)), channels)
    a = np.clip(np.nan_to_num(a.astype(np.float32), nan=0.0), 0.0, 1.0)
    if a.shape[2] == 4:  # composite over white, as the file rule does for transparency
        a = a[..., :3] * a[..., 3:] + (1.0 - a[..., 3:])
    if a.shape[2] != channels:
        a = np.repeat(a, 3, axis=2) if channels == 3 else (a @ np.float32([0.299, 0.587, 0.114]))[..., None]
    return np.ascontiguousarray(a, dtype=np.float32)


def expand_inputs(patterns: Iterable[str | Path]) -> list[Path]:
    """Files, folders (searched recursively for image files) and globs -> a sorted, de-duplicated list."""
    out: list[Path] = []
    for pat in patterns:
        p = Path(pat).expanduser()
        if p.is_dir():
            found = sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not is_ignored(f.name)
            )
            if not found:
                raise CnnlabError(f"folder {p} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            out += found
        elif p.is_file():
            out.append(p)
        elif any(ch in str(pat) for ch in "*?["):
            found = sorted(Path(f) for f in glob.glob(str(p), recursive=True) if Path(f).is_file())
            if not found:
                raise CnnlabError(f"the pattern {pat!r} matches no files")
            out += found
        else:
            raise CnnlabError(f"{pat}: no such file or folder")
    seen: set[Path] = set()
    return [f for f in out if not (f in seen or seen.add(f))]


def check_onnx_file(path: Path) -> None:
    """Refuse a damaged ONNX file, or one whose weights live in external files.

    ONNX Runtime reads "external data" from any path the file names (``../../secret``); the files
    ``cnnlab export`` writes hold their weights inside, so an external reference means a foreign or
    tampered file. The check parses the graph without loading any external data.
    """
    from cnnlab.export.onnx import _require_onnx

    onnx, _ = _require_onnx()
    from onnx.external_data_helper import uses_external_data

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a damaged file
        raise CnnlabError(f"{path} is not a readable ONNX file ({type(exc).__name__}); re-export it") from None
    tensors = [*model.graph.initializer]
    tensors += [a.t for node in model.graph.node for a in node.attribute if a.HasField("t")]
    if any(uses_external_data(t) for t in tensors):
        raise CnnlabError(
            f"{path} keeps weights in external data files; cnnlab loads only self-contained ONNX files "
            "(re-export with 'cnnlab export MODEL --format onnx')"
        )


def _load_onnx(path: Path, threads: int | None = None) -> tuple[OnnxForward, dict[str, Any]]:
    """(forward, meta) of an exported ONNX file; any damage becomes a CnnlabError naming the file."""
    from cnnlab.export.onnx import read_onnx_meta

    check_onnx_file(path)
    try:
        forward, meta = OnnxForward(path, threads), read_onnx_meta(path)
    except CnnlabError:
        raise
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime and json raise many types for a bad file
        raise CnnlabError(f"{path} cannot be loaded by ONNX Runtime ({type(exc).__name__}); re-export it") from None
    if not isinstance(meta, dict):
        raise CnnlabError(f"the cnnlab metadata in {path} is not a JSON object; re-export it")
    return forward, meta


class OnnxForward:
    """An exported ONNX file run by ONNX Runtime (CPU), called like a torch module: tensor in, tensor out."""

    def __init__(self, path: Path, threads: int | None = None):
        from cnnlab.export.onnx import onnx_logits_fn

        self._fn = onnx_logits_fn(path, threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._fn(x.detach().cpu().numpy()))


class OpenVinoForward:
    """An OpenVINO IR (``.xml`` + ``.bin`` from ``cnnlab export --format openvino``) on OpenVINO's CPU plugin."""

    def __init__(self, compiled):
        from cnnlab.export.openvino import openvino_logits_fn

        self._fn = openvino_logits_fn(compiled)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._fn(x.detach().cpu().numpy()))


def _numpy_model_folder(p: Path) -> Path | None:
    """The model folder of a NumPy-engine run (weights.npz + model.json), given the run, the folder or a file."""
    for folder in (p.parent,) if p.is_file() else (p / "model", p):
        if (folder / "weights.npz").is_file() and (folder / "model.json").is_file():
            return folder
    return None


def inference_device(path: str | Path, device: str | torch.device) -> torch.device:
    """``auto``: the GPU when there is one and the model is a torch model. ONNX files and NumPy-engine
    runs always run on the CPU (another device is refused by ``load_for_inference``, with the reason)."""
    p = Path(path)
    cpu_only = (p.is_file() and p.suffix.lower() in (".onnx", ".xml")) or _numpy_model_folder(p) is not None
    if cpu_only:
        return torch.device("cpu" if str(device) == "auto" else device)
    return resolve_device(device)


TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts")


def refuse_torchscript(path: str | Path) -> CnnlabError:
    """The refusal for a TorchScript file loaded without the opt-in: TorchScript is code, not data."""
    return CnnlabError(
        f"{path} is a TorchScript file, and TorchScript is a program: loading it runs whatever its author "
        "wrote (it can read and write files). Use the ONNX export or the model folder instead "
        "('cnnlab export MODEL --format onnx'), or pass --trust-torchscript if you trust the file's author"
    )


def load_for_inference(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    trust_torchscript: bool = False,
    threads: int | None = None,
) -> tuple[Any, dict[str, Any], str]:
    """(forward, meta, kind) for a run or model folder ("cnnlab"), or a file written by ``cnnlab export``:
    an ``.onnx`` file ("onnx", ONNX Runtime on the CPU), an OpenVINO ``.xml`` ("openvino", its CPU
    plugin) or a TorchScript ``.pt`` file ("torchscript", only with ``trust_torchscript``: a
    TorchScript file is code and runs with the caller's rights). The class names and preprocessing
    come from the metadata stored in the exported file. A run of ``cnnlab scratch train`` ("numpy",
    weights.npz) is run by the NumPy engine itself. ``threads``: ONNX Runtime's and OpenVINO's
    inference threads (None: their own default; torch's are global, ``torch.set_num_threads``)."""
    p = Path(path)
    not_cpu = torch.device(device).type != "cpu"  # ONNX Runtime (CPU provider) and NumPy run on the CPU only
    if p.is_file() and p.suffix.lower() == ".onnx":
        if not_cpu:
            raise CnnlabError(f"{p.name} is an ONNX file: it runs on the CPU through ONNX Runtime; drop --device")
        return (*_load_onnx(p, threads), "onnx")
    if p.is_file() and p.suffix.lower() == ".xml":
        from cnnlab.export.openvino import read_ir

        if not_cpu:
            raise CnnlabError(f"{p.name} is an OpenVINO model: it runs on the CPU plugin here; drop --device")
        compiled, meta = read_ir(p, threads)
        return OpenVinoForward(compiled), meta, "openvino"
    folder = _numpy_model_folder(p)
    if folder is not None:
        if not_cpu:
            raise CnnlabError(f"{path} was trained by the NumPy engine, which runs on the CPU; drop --device")
        meta = read_json(folder / META)
        check_model_meta(meta, folder / META)
        return NumpyForward(folder, meta), meta, "numpy"
    if p.is_file() and p.suffix.lower() in TORCHSCRIPT_SUFFIXES:
        if not trust_torchscript:
            raise refuse_torchscript(p)
        from cnnlab.export.torchscript import load_torchscript

        module, meta = load_torchscript(p)
        return module.to(device), meta, "torchscript"
    model, meta = load_model(path, device)
    return model, meta, "cnnlab"


class Predictor:
    """Load a model once, then predict classes for images of any kind.

    The model is a run folder, a model folder, or an ``.onnx`` / TorchScript file from ``cnnlab
    export`` (see :func:`load_for_inference`; TorchScript only with ``trust_torchscript=True``);
    preprocessing is the same for all of them.

    Example::

        p = Predictor("runs/mnist-sample-seed_cnn")
        p.predict(["digit.png"], topk=3)[0]["label"]
    """

    def __init__(
        self,
        model_path: str | Path,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        max_pixels: int | None = None,
        trust_torchscript: bool = False,
        threads: int | None = None,
    ):
        model_path = resolve_run_path(model_path)  # demo:mnist -> the run shipped in the package
        device = inference_device(model_path, device)
        self.source = str(model_path)
        self.model, self.meta, self.kind = load_for_inference(
            model_path, device, trust_torchscript=trust_torchscript, threads=threads
        )
        where = f"{'model.json' if self.kind in ('cnnlab', 'numpy') else 'the metadata'} of {model_path}"
        check_model_meta(self.meta, where, rebuild=self.kind in ("cnnlab", "numpy"))
        self.device = torch.device(device)
        self.classes: list[str] = list(self.meta["classes"])
        self.input_shape: list[int] = list(self.meta["input_shape"])
        self.channels, self.size = self.input_shape[0], self.input_shape[1]
        self.resize_size = self.meta.get("resize_size")  # pretrained weights' transform: shorter side, then crop
        self.batch_size = int(batch_size)
        self.max_pixels = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
        self.mean = torch.tensor(self.meta["mean"], dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(self.meta["std"], dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.warm_up()

    def warm_up(self) -> None:
        """One inference on a blank image; checks the output size against the class list."""
        try:
            out = self.logits(torch.zeros(1, *self.input_shape, device=self.device))
        except Exception as exc:  # noqa: BLE001 - a tampered graph can fail in many ways; name the model
            raise CnnlabError(
                f"{self.source}: the warm-up inference failed ({type(exc).__name__}: {str(exc)[:200]}); "
                "re-export or retrain the model"
            ) from None
        if tuple(out.shape) != (1, len(self.classes)):
            raise CnnlabError(
                f"{self.source}: the model gives {tuple(out.shape)[1:]} outputs but its metadata lists "
                f"{len(self.classes)} classes; fix 'classes' in the metadata or re-export the model"
            )
        if not bool(torch.isfinite(out).all()):
            raise CnnlabError(
                f"{self.source}: the model's output on a blank image is NaN or infinite (its weights hold NaN/Inf?); "
                "retrain it or load an earlier checkpoint"
            )

    # ---- preprocessing -------------------------------------------------------------------------
    def load(self, image: ImageLike, name: str | None = None) -> np.ndarray:
        """Any supported input -> float32 (H, W, C) in [0, 1] with the model's channel count."""
        if isinstance(image, (str, Path)):
            return to_array(open_image(image, max_pixels=self.max_pixels), self.channels, name=image)
        if isinstance(image, (bytes, bytearray, memoryview)):
            return decode_bytes(bytes(image), self.channels, name=name or "<bytes>", max_pixels=self.max_pixels)
        if isinstance(image, Image.Image):
            if image.width * image.height > self.max_pixels:
                raise ImageReadError(name or "<image>", "too_large", f"too large: {image.width}x{image.height}")
            return to_array(image, self.channels, name=name or "<image>")
        if isinstance(image, np.ndarray):
            return array_to_float(image, self.channels)
        raise CnnlabError(f"cannot predict on a {type(image).__name__}; give paths, bytes, PIL images or arrays")

    def to_input(self, arr: np.ndarray) -> torch.Tensor:
        """float (H, W, C) in [0, 1] -> (C, S, S) resized exactly as FolderImages does, not yet normalised."""
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1)  # (C, H, W)
        return fit_to_input(x, self.size, self.resize_size).clamp_(0, 1)

    def preprocess(self, arrays: Sequence[np.ndarray]) -> torch.Tensor:
        """Decoded images -> normalised batch (B, C, S, S) on the model's device."""
        x = torch.stack([self.to_input(a) for a in arrays]).to(self.device)
        return (x - self.mean) * self.inv_std

    # ---- inference -----------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (B, C, S, S) -> logits (B, K), run in chunks of ``batch_size``."""
        outs = []
        for i in range(0, len(x), self.batch_size):
            out = self.model(x[i : i + self.batch_size])
            outs.append(main_logits(out))
        return torch.cat(outs) if outs else torch.empty(0, len(self.classes))

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised batch -> softmax probabilities (B, K)."""
        return torch.softmax(self.logits(x), dim=1)

    def format(self, probs: torch.Tensor, topk: int = 5) -> list[dict[str, Any]]:
        """(B, K) probabilities -> one dict per image: label, index, probability and the top-k list."""
        k = max(1, min(int(topk), len(self.classes)))
        values, indices = probs.cpu().topk(k, dim=1)
        results = []
        for vals, idxs in zip(values.tolist(), indices.tolist()):
            top = [{"label": self.classes[i], "index": i, "probability": v} for v, i in zip(vals, idxs)]
            results.append({**top[0], "top": top})
        return results

    def predict(self, images: ImageLike | Sequence[ImageLike], topk: int = 5) -> list[dict[str, Any]]:
        """Predict one image or a sequence of images; returns one result dict per image, in order.

        Raises:
            ImageReadError: for the first image that cannot be decoded (use :meth:`load` per image
                to handle bad files one by one, as ``cnnlab predict`` does).
        """
        if isinstance(images, (str, Path, bytes, bytearray, Image.Image, np.ndarray)):
            images = [images]
        arrays = [self.load(im) for im in images]
        if not arrays:
            return []
        return self.format(self.probabilities(self.preprocess(arrays)), topk)

    def public_meta(self) -> dict[str, Any]:
        """What a client may see about the model: no file paths, no library versions, no config."""
        return public_meta(self.meta)


__all__ = ["Predictor", "decode_bytes", "array_to_float", "expand_inputs"]
