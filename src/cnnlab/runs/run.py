"""A run folder as one object: ``open_run(path) -> Run``.

Every command that reads a run (evaluate, interpret, report, visualize, predict, export, compress,
serve, runs) opens it here, so every kind of run cnnlab writes is read the same way: PyTorch on a
named dataset or on an image folder (also trained with ``--on-bad-image skip``, balancing, a train
fraction or a split manifest), fine-tuned, DDP, a tuning trial, and a NumPy-engine run.

A :class:`Run` knows its config, classes, preprocessing (input shape, mean, std), its model (torch
or NumPy), the exact samples of each split (from ``split.csv``: files skipped at training time stay
skipped, and the folder is never rescanned) and its saved test predictions (``predictions.csv``,
written once by training). Importing this module imports neither torch nor the datasets; methods
that need them import them when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.files.atomic import remove_stale_temps
from cnnlab.readers import read_json, read_yaml
from cnnlab.runs.builtin import resolve_run_path
from cnnlab.runs.folder import read_history_csv, refuse_cv_parent
from cnnlab.runs.meta import check_model_meta
from cnnlab.runs.predictions import Predictions, read_predictions

ENGINES = ("torch", "numpy")


@dataclass
class Examples:
    """The exact samples of one split of a run, decoded on demand as the model saw them.

    ``ids`` lead back to the image: a path relative to the data folder for image folders, the index
    in the dataset's official split for named datasets (the ``source`` column of ``split.csv``).
    """

    split: str
    ids: list[str]
    labels: np.ndarray  # (N,) int64
    mean: list[float]
    std: list[float]
    _decode: Callable[[np.ndarray], np.ndarray] = field(repr=False)  # indices -> (n, H, W, C) float32 [0, 1]

    def __len__(self) -> int:
        return len(self.ids)

    def images(self, indices) -> np.ndarray:
        """(n, H, W, C) float32 in [0, 1]: decoded and resized, before normalisation."""
        return self._decode(np.asarray(indices, dtype=np.int64).reshape(-1))

    def inputs(self, indices) -> np.ndarray:
        """(n, C, H, W) float32: normalised model inputs."""
        x = self.images(indices).transpose(0, 3, 1, 2)
        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray((x - mean) / std, dtype=np.float32)

    def batches(self, batch_size: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(indices, inputs) in order, ``batch_size`` at a time."""
        for i in range(0, len(self), batch_size):
            idx = np.arange(i, min(i + batch_size, len(self)))
            yield idx, self.inputs(idx)


@dataclass
class Run:
    """One run folder. Build it with :func:`open_run`."""

    path: Path
    engine: str  # "torch" | "numpy"
    config: dict[str, Any]  # config.yaml as written (the NumPy engine's is flat)
    meta: dict[str, Any]  # model/model.json
    data_info: dict[str, Any]  # data.json ({} when absent)

    # ---- what the run is -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def input_shape(self) -> list[int]:
        return [int(v) for v in self.meta["input_shape"]]

    @property
    def mean(self) -> list[float]:
        return [float(v) for v in self.meta["mean"]]

    @property
    def std(self) -> list[float]:
        return [float(v) for v in self.meta["std"]]

    @property
    def model_name(self) -> str:
        return str(self.meta.get("architecture") or config_section(self.config, "model").get("name", "?"))

    @property
    def dataset(self) -> str:
        return str(self.meta.get("dataset") or config_section(self.config, "data").get("name", "?"))

    @property
    def data_root(self) -> str | None:
        if self.engine == "numpy":
            return self.config.get("data_root")
        return config_section(self.config, "data").get("root")

    @property
    def tta(self) -> str:
        """The test-time augmentation its validation and test metrics were computed with."""
        return str(config_section(self.config, "train").get("tta") or "none")

    @property
    def is_folder(self) -> bool:
        """Whether its images are files (``folder:PATH`` or ``csv:FILE``): split.csv names them by path."""
        from cnnlab.data.datasets import file_data  # local: the datasets are not imported with runs

        return file_data(self.dataset) is not None

    @property
    def kind(self) -> str:
        """A short description: engine, data kind and how it was trained (fine-tuned, DDP, trial)."""
        files = self.dataset.partition(":")[0] if self.is_folder else "dataset"  # folder | csv | dataset
        tags = ["numpy" if self.engine == "numpy" else "torch", files]
        model = config_section(self.config, "model")
        if model.get("pretrained"):
            tags.append("fine-tuned")
        if self.env.get("world_size", 1) > 1:  # trained by several processes (torchrun / --nproc)
            tags.append("ddp")
        if self.path.parent.name == "trials":
            tags.append("trial")
        data = config_section(self.config, "data")
        if data.get("folds"):  # one run of a cross-validation (cnnlab cv)
            tags.append(f"fold {data.get('fold')}/{data['folds']}")
        return " ".join(tags)

    @property
    def env(self) -> dict[str, Any]:
        """env.json: versions, machine, seed, world size ({} when absent)."""
        path = self.path / "env.json"
        return read_json(path) if path.is_file() else {}

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(file, reason) of the files left out at training time (``--on-bad-image skip``)."""
        return [tuple(item) for item in self.data_info.get("skipped", [])]

    def history(self) -> list[dict[str, float]]:
        path = self.path / "history.csv"
        return read_history_csv(path) if path.is_file() else []

    def metrics(self) -> dict[str, Any]:
        path = self.path / "metrics.json"
        return read_json(path) if path.is_file() else {}

    # ---- data ------------------------------------------------------------------------------------
    def split_rows(self) -> list[tuple[str, str, int]]:
        """(split, source, label) rows of ``split.csv``."""
        from cnnlab.data.splits import read_split_csv

        path = self.path / "split.csv"
        if not path.is_file():
            raise CnnlabError(f"{self.path} has no split.csv, so its exact splits are unknown; retrain it")
        try:
            return read_split_csv(path)
        except (OSError, KeyError, ValueError) as exc:
            raise CnnlabError(f"{path} cannot be read ({exc}); it should have columns split,source,label") from None

    def examples(self, split: str = "test", data_root: str | None = None) -> Examples:
        """The exact samples of ``split`` this run was trained/evaluated on, preprocessed as the model file says."""
        rows = [(src, lab) for s, src, lab in self.split_rows() if s == split]
        if not rows:
            have = sorted({s for s, _, _ in self.split_rows()})
            raise CnnlabError(f"{self.path} has no {split!r} split (it has {', '.join(have) or 'none'})")
        ids = [src for src, _ in rows]
        labels = np.array([lab for _, lab in rows], dtype=np.int64)
        if labels.max() >= len(self.classes):
            raise CnnlabError(
                f"{self.path / 'split.csv'} holds label {labels.max()}, but the run has {len(self.classes)} classes"
            )
        decode = self._folder_decoder(ids) if self.is_folder else self._array_decoder(ids, split, data_root)
        return Examples(split, ids, labels, self.mean, self.std, decode)

    def data_folder(self) -> Path:
        """The folder the paths of a file run's split.csv start from: ``folder:PATH`` itself, or for
        ``csv:FILE`` the CSV's folder (or ``data.csv_root``)."""
        from cnnlab.data.datasets import file_data_root

        folder = file_data_root(self.dataset, config_section(self.config, "data"))
        if folder is None or not folder.is_dir():
            raise CnnlabError(
                f"the image folder of {self.name}, {folder}, is not there any more; put it back "
                "(the run's split.csv names its files relative to it)"
            )
        return folder

    def _folder_decoder(self, ids: list[str]) -> Callable[[np.ndarray], np.ndarray]:
        from cnnlab.data.images import load_image

        root = self.data_folder().resolve()
        c, h, w = self.input_shape
        resize = self.meta.get("resize_size")
        outside = [i for i in ids if not (root / i).resolve().is_relative_to(root)]
        if outside:  # a tampered split.csv must not make a command read files elsewhere
            raise CnnlabError(f"{self.path / 'split.csv'} names files outside the data folder {root}: {outside[:3]}")

        def decode(idx: np.ndarray) -> np.ndarray:
            out = np.zeros((len(idx), h, w, c), np.float32)
            for j, i in enumerate(idx):
                img = load_image(root / ids[int(i)], c)  # (H0, W0, C) float32 in [0, 1]
                out[j] = _fit(img, h, resize)
            return out

        return decode

    def _array_decoder(self, ids: list[str], split: str, data_root: str | None) -> Callable[[np.ndarray], np.ndarray]:
        from cnnlab.data.datasets import load_dataset

        ds = load_dataset(self.dataset, root=data_root or self.data_root)
        # split.csv indexes the official split a sample came from; a cross-validation fold tests on the training split
        folds = config_section(self.config, "data").get("folds") or 0
        source = ds.test_images if split == "test" and not folds else ds.train_images
        bad = next((i for i in ids if not (i.isascii() and i.isdigit() and int(i) < len(source))), None)
        if bad is not None:  # an official-split index, written by training; anything else is a damaged file
            raise CnnlabError(
                f"{self.path / 'split.csv'} names sample {bad[:20]!r}, which is not an index into the "
                f"{len(source)} images of {self.dataset}'s split"
            )
        arr = source[np.array([int(i) for i in ids], dtype=np.int64)]
        c, h, _ = self.input_shape
        resize = self.meta.get("resize_size")
        if arr.shape[3] != c or arr.shape[1] != h or resize:
            from cnnlab.data.pipeline import convert_arrays  # torch: resizing as training did

            arr = convert_arrays(arr, c, h, resize)
        return lambda idx: arr[idx].astype(np.float32) / 255.0

    # ---- model and predictions -------------------------------------------------------------------
    def load_model(self, device: Any = "cpu"):
        """The trained network, callable on a normalised (B, C, H, W) tensor; eval mode.

        torch runs: the ``nn.Module`` from the model file. NumPy runs: the NumPy network wrapped to
        take and return tensors (CPU only)."""
        from cnnlab.devices import resolve_device

        if self.engine == "numpy":
            if str(device) not in ("auto", "cpu"):
                raise CnnlabError(f"{self.name} was trained by the NumPy engine, which runs on the CPU; drop --device")
            return NumpyForward(self.path / "model", self.meta)
        from cnnlab.runs.model_file import load_model

        return load_model(self.path, resolve_device(device))[0]

    def torch_model(self, device: Any = "cpu", what: str = "this command"):
        """The ``nn.Module`` of a torch run; a NumPy run is refused with the reason."""
        if self.engine == "numpy":
            raise CnnlabError(
                f"{self.name} was trained by the NumPy engine; {what} needs a PyTorch model (hooks, autograd "
                "or an exporter). Train it with 'cnnlab train' for this, or use evaluate, interpret, report, "
                "predict and serve, which take NumPy runs."
            )
        return self.load_model(device)

    def logits(
        self, examples: Examples, device: Any = "cpu", batch_size: int = 256, tta: str | None = None
    ) -> np.ndarray:
        """(N, K) float32 logits of the run's model on ``examples``. With test-time augmentation
        (``tta``; None: the run's own :attr:`tta`, as its metrics were computed), the log of the
        views' mean softmax."""
        import torch

        from cnnlab.data.tta import TTA, view_logits
        from cnnlab.devices import resolve_device

        views = TTA.create(self.tta if tta is None else tta)
        device = "cpu" if self.engine == "numpy" else resolve_device(device)
        model = self.load_model(device)
        out = []
        with torch.inference_mode():
            for _, x in examples.batches(batch_size):
                out.append(view_logits(model, torch.from_numpy(x).to(device), views).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def predictions(self) -> Predictions | None:
        """The test predictions saved by training (``predictions.csv``), or None for older runs."""
        path = self.path / "predictions.csv"
        return read_predictions(path, self.classes) if path.is_file() else None

    def test_predictions(self, device: Any = "cpu") -> tuple[Predictions, Examples]:
        """Saved test predictions when they match the test split, else computed now; with the examples."""
        examples = self.examples("test")
        saved = self.predictions()
        if saved is not None and saved.ids == examples.ids:
            return saved, examples
        logits = self.logits(examples, device)
        return Predictions(examples.ids, examples.labels, _softmax(logits)), examples


class NumpyForward:
    """A NumPy-engine model called like a torch module: normalised (B, C, H, W) tensor in, logits out.

    The one wrapper: runs (evaluate, interpret, report) and Predictor (predict, serve) both use it.
    ``meta`` is the model folder's checked ``model.json``."""

    def __init__(self, folder: Path, meta: dict[str, Any]):
        from cnnlab.numpy_engine import create_model, load_npz

        try:
            self.net = create_model(meta["architecture"], **meta["kwargs"])
            load_npz(self.net, folder / "weights.npz")
        except CnnlabError:
            raise
        except Exception as exc:  # noqa: BLE001 - tampered kwargs or weights.npz: name the folder
            raise CnnlabError(
                f"{folder}: the NumPy model cannot be rebuilt from model.json and weights.npz "
                f"({type(exc).__name__}: {str(exc)[:200]}); retrain it"
            ) from None
        self.net.eval()

    def __call__(self, x):
        import torch

        return torch.from_numpy(np.asarray(self.net.forward(x.detach().cpu().numpy()), dtype=np.float32))

    def eval(self):
        return self


def open_run(path: str | Path) -> Run:
    """Open a run folder written by ``cnnlab train`` (any kind) or ``cnnlab scratch train``.

    Raises CnnlabError naming what is missing: no folder, no config.yaml (not a run), no model
    (unfinished or interrupted run). A built-in name (``demo:mnist``) opens the run shipped in the package."""
    path = resolve_run_path(path).expanduser()
    if not path.is_dir():
        raise CnnlabError(f"run folder {path} does not exist; 'cnnlab runs' lists the run folders")
    if not (path / "config.yaml").is_file():
        refuse_cv_parent(path)
        raise CnnlabError(f"{path} is not a run folder (no config.yaml); give a folder printed by 'cnnlab train'")
    for folder in (path, path / "model", path / "checkpoints"):  # what a kill mid-write left (live writers kept)
        remove_stale_temps(folder)
    config = read_run_config(path)
    engine = "numpy" if config.get("engine") == "numpy" else "torch"
    meta_path = path / "model" / "model.json"
    weights = path / "model" / ("weights.npz" if engine == "numpy" else "weights.safetensors")
    if not meta_path.is_file() or not weights.is_file():
        raise CnnlabError(
            f"{path} has no trained model yet (no model/{weights.name}): the run is unfinished or was "
            f"interrupted; continue it with 'cnnlab train --resume {path}'"
            if engine == "torch"
            else f"{path} has no trained model yet (no model/{weights.name}): the run is unfinished; train it again"
        )
    meta = read_json(meta_path)
    check_model_meta(meta, meta_path)  # the one validator: a tampered model.json is named here, not a KeyError later
    data_info = read_json(path / "data.json") if (path / "data.json").is_file() else {}
    return Run(path=path, engine=engine, config=config, meta=meta, data_info=data_info)


def find_run(path: str | Path) -> Run | None:
    """The run a path belongs to (the run folder, its model/ folder or a file in it, or a built-in name), or None."""
    p = resolve_run_path(path).expanduser()
    for candidate in (p, p.parent, p.parent.parent):
        if is_run(candidate) and (candidate / "model").is_dir():
            return open_run(candidate)
    return None


def is_run(path: str | Path) -> bool:
    """Whether ``path`` looks like a run folder (has a config.yaml)."""
    return (Path(path) / "config.yaml").is_file()


def config_section(config: dict[str, Any], key: str) -> dict[str, Any]:
    """A section of a torch config (``model``, ``data``, ...); the NumPy engine's flat config maps to the same keys."""
    value = config.get(key)
    if isinstance(value, dict):
        return value
    if config.get("engine") == "numpy":  # flat: model: lenet, data: mnist, data_root: ...
        return {"name": value} if value is not None else {}
    return {}


def read_run_config(path: Path) -> dict[str, Any]:
    """A run folder's config.yaml as a mapping, read with the limits of ``cnnlab.readers``."""
    config = read_yaml(path / "config.yaml") or {}
    if not isinstance(config, dict):
        raise CnnlabError(f"{path / 'config.yaml'} is not a mapping of config keys")
    return config


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _fit(img: np.ndarray, size: int, resize_size: int | None) -> np.ndarray:
    """A decoded (H, W, C) image resized as training resized it (``data.loaders.fit_to_input``)."""
    if img.shape[:2] == (size, size) and not resize_size:
        return img
    import torch

    from cnnlab.data.loaders import fit_to_input

    t = fit_to_input(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), size, resize_size)
    return t.clamp_(0, 1).permute(1, 2, 0).numpy()
