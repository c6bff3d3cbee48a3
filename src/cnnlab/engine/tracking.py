"""Experiment tracking: TensorBoard and (optionally) MLflow as Trainer callbacks.

Seed 002 ("Monitoring") names TensorBoard and MLflow among the tools for watching training. Both
are plain ``cb(trainer, row)`` callbacks, called after each epoch (see ``engine.trainer``), plus an
``on_train_end(trainer, metrics)`` hook that ``cnnlab.api.train`` calls once the test metrics are
known. TensorBoard gets per-epoch scalars (losses, accuracies, macro-F1, learning rate, epoch
time), a grid of the first validation images, the model graph (traced once with one batch), and
at the end the confusion matrix and the test metrics. Logging never changes training: the graph is
traced in eval mode inside ``torch.random.fork_rng`` and the data generator's state is restored.
Event files go to ``<run folder>/tensorboard``; view them with ``tensorboard --logdir runs``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError

# history column -> TensorBoard tag (grouped so train and val share a chart section)
SCALAR_TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_acc": "accuracy/train",
    "val_acc": "accuracy/val",
    "val_macro_f1": "macro_f1/val",
    "lr": "lr",
    "seconds": "time/epoch_seconds",
}


def tracking_callbacks(cfg, run_dir: Path) -> list:
    """The callbacks that ``cfg.output.tensorboard`` / ``cfg.output.mlflow`` ask for (rank 0 only under DDP)."""
    out: list = []
    if _rank() != 0:  # one event file / MLflow run per training, written by the process that owns the run folder
        return out
    if getattr(cfg.output, "tensorboard", False):
        out.append(TensorBoardCallback(Path(run_dir) / "tensorboard"))
    if getattr(cfg.output, "mlflow", False):
        out.append(MLflowCallback(cfg, run_dir))
    return out


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise CnnlabError(
            "--tensorboard needs the tensorboard package: pip install 'cnnlab[track]' (or pip install tensorboard)"
        ) from None
    return SummaryWriter


def _example_batch(trainer):
    """One batch for the graph and the image grid, without moving the training data's RNG."""
    loader = trainer.val_loader if trainer.val_loader is not None else trainer.train_loader
    gen = getattr(trainer, "generator", None)
    state = gen.get_state() if gen is not None else None
    try:
        x, _ = next(iter(loader))
    finally:
        if state is not None:
            gen.set_state(state)
    return x


class TensorBoardCallback:
    """Writes one event file per run: scalars each epoch; images and graph once; confusion at the end."""

    def __init__(self, log_dir: str | Path, graph: bool = True, images: bool = True, max_images: int = 64):
        self.writer = _summary_writer()(log_dir=str(log_dir))
        self.log_dir = Path(log_dir)
        self.graph, self.images, self.max_images = graph, images, max_images
        self._started = False

    def __call__(self, trainer, row: dict) -> None:
        step = int(row["epoch"])
        if not self._started:
            self._started = True
            self._log_once(trainer)
        for key, tag in SCALAR_TAGS.items():
            if key in row:
                self.writer.add_scalar(tag, float(row[key]), step)
        self.writer.flush()

    def _log_once(self, trainer) -> None:
        import torch
        from torchvision.utils import make_grid

        x = _example_batch(trainer)  # (B, C, H, W), normalised
        if self.images:
            grid = make_grid(x[: self.max_images].float().cpu(), nrow=8, normalize=True, scale_each=True)
            self.writer.add_image("inputs/first_batch", grid, 0)  # (3, H', W')
        if self.graph:
            model, was_training = trainer.model, trainer.model.training
            model.eval()
            try:
                with torch.random.fork_rng(devices=[]), torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.jit.trace deprecation notice
                    self.writer.add_graph(model, x[:1])
            except Exception as exc:  # tracing can fail for exotic models; the scalars still matter
                trainer.log(f"tensorboard: model graph skipped ({type(exc).__name__}: {exc})")
            finally:
                model.train(was_training)

    def on_train_end(self, trainer, metrics: dict[str, Any]) -> None:
        if metrics:
            for key in ("accuracy", "loss", "top5_accuracy"):
                if key in metrics:
                    self.writer.add_scalar(f"test/{key}", float(metrics[key]), trainer.epoch)
            if "confusion_matrix" in metrics:
                self.writer.add_image("test/confusion_matrix", _confusion_image(metrics), trainer.epoch)
        self.writer.close()


def _confusion_image(metrics: dict[str, Any], cell: int = 16):
    """The row-normalised test confusion matrix as a (3, H, W) image, white (0) to blue (1), one
    ``cell``-pixel square per entry; an array, so the engine needs no plotting library."""
    import numpy as np

    cm = np.asarray(metrics["confusion_matrix"], dtype=np.float64)  # (true, predicted)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    white, blue = np.array([1.0, 1.0, 1.0]), np.array([0.03, 0.19, 0.42])
    rgb = white + rows[..., None] * (blue - white)  # (K, K, 3)
    return np.kron(rgb, np.ones((cell, cell, 1))).transpose(2, 0, 1).astype(np.float32)


class MLflowCallback:
    """Logs the config as params, the epoch rows as metrics, and the run's files as artifacts.

    MLflow is optional; where to log follows MLflow's own settings (``MLFLOW_TRACKING_URI``,
    ``MLFLOW_EXPERIMENT_NAME``; by default a local ``mlruns/`` folder).
    """

    def __init__(self, cfg, run_dir: str | Path):
        try:
            import mlflow
        except ImportError:
            raise CnnlabError("--output.mlflow true needs MLflow: pip install mlflow (or turn it off)") from None
        self.mlflow, self.cfg, self.run_dir = mlflow, cfg, Path(run_dir)
        self._active = False

    def __call__(self, trainer, row: dict) -> None:
        if not self._active:
            from cnnlab.config import to_dict

            if self.mlflow.active_run() is not None:  # left open by an interrupted run in this process
                self.mlflow.end_run()
            self.mlflow.start_run(run_name=self.run_dir.name)
            self.mlflow.log_params(_flatten(to_dict(self.cfg)))
            self.mlflow.set_tag("cnnlab.run_dir", str(self.run_dir))
            self._active = True
        metrics = {k: float(v) for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))}
        self.mlflow.log_metrics(metrics, step=int(row["epoch"]))

    def on_train_end(self, trainer, metrics: dict[str, Any]) -> None:
        if not self._active:
            return
        scalars = {f"test_{k}": float(metrics[k]) for k in ("accuracy", "loss", "top5_accuracy") if k in metrics}
        if scalars:
            self.mlflow.log_metrics(scalars, step=trainer.epoch)
        for name in ("config.yaml", "history.csv", "metrics.json"):
            if (self.run_dir / name).is_file():
                self.mlflow.log_artifact(str(self.run_dir / name))
        self.mlflow.end_run()
        self._active = False


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out
