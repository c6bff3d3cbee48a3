"""Interpretation of a trained classifier's mistakes: which class pairs it confuses most, which
test images it gets most wrong (highest loss), and a ``misclassified.csv`` a user can open.

Seed 000 lists "common confusion pairs" (cat/dog, automobile/truck) as the first thing to look at
after accuracy; users of other tools ask for the misclassified files themselves. The pure functions
here take logits, targets and class names (NumPy); :func:`run_predictions` is the bridge from a run
folder to those arrays (it loads the model and the run's own test split, so it imports torch lazily).
Every sample keeps an ``id``: its file name (relative to the data folder) for image folders, its
index in the split for in-memory datasets, so a row of the CSV leads back to the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.evaluation.metrics import confusion_matrix, softmax
from cnnlab.files import atomic, tables

CSV_COLUMNS = ["index", "id", "true", "pred", "confidence", "p_true", "loss"]


def sample_losses(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N,) cross-entropy of each sample: logsumexp(z) - z_target (float64, stable)."""
    z = np.asarray(logits, dtype=np.float64)
    m = z.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(1))
    return lse - z[np.arange(len(z)), np.asarray(targets)]


def most_confused(cm: np.ndarray, classes: list[str], top: int = 10, min_count: int = 1) -> list[dict[str, Any]]:
    """Off-diagonal cells of a confusion matrix, largest first.

    Returns rows {"true", "pred", "count", "share"}; ``share`` is the fraction of the true class's
    samples that went to ``pred``. Ties are broken by the class order (stable).
    """
    cm = np.asarray(cm)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")
    support = cm.sum(1)
    rows = []
    for f in flat[:top]:
        i, j = divmod(int(f), cm.shape[1])
        if off[i, j] < min_count:
            break
        share = float(off[i, j] / support[i])
        rows.append({"true": classes[i], "pred": classes[j], "count": int(off[i, j]), "share": share})
    return rows


def prediction_table(
    logits: np.ndarray, targets: np.ndarray, classes: list[str], ids: list[str] | None = None
) -> list[dict[str, Any]]:
    """One row per sample: index, id, true and predicted class, confidence (probability of the
    prediction), probability of the true class, loss and whether it was right."""
    probs = softmax(np.asarray(logits, dtype=np.float64))
    pred = probs.argmax(1)
    losses = sample_losses(logits, targets)
    ids = ids if ids is not None else [str(i) for i in range(len(targets))]
    return [
        {
            "index": i,
            "id": ids[i],
            "true": classes[int(t)],
            "pred": classes[int(p)],
            "confidence": float(probs[i, p]),
            "p_true": float(probs[i, t]),
            "loss": float(losses[i]),
            "correct": bool(p == t),
        }
        for i, (t, p) in enumerate(zip(targets, pred))
    ]


def top_losses(rows: list[dict[str, Any]], k: int = 25, only_wrong: bool = False) -> list[dict[str, Any]]:
    """The k rows with the highest loss (the model's worst predictions), highest first."""
    pool = [r for r in rows if not r["correct"]] if only_wrong else rows
    return sorted(pool, key=lambda r: -r["loss"])[:k]


def misclassified(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All wrong predictions, highest loss first."""
    return top_losses(rows, len(rows), only_wrong=True)


def write_misclassified_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write the wrong predictions (highest loss first) with columns ``CSV_COLUMNS``."""
    path = Path(path)
    with atomic.atomic_write(path, "w", newline="") as f:  # class and file names escaped against formulas
        w = tables.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in misclassified(rows):
            w.writerow({**r, **{k: f"{r[k]:.6f}" for k in ("confidence", "p_true", "loss")}})
    return path


@dataclass
class RunPredictions:
    """A run's predictions on one split, with access to the images behind them and (lazily) its model.

    ``run`` is a :class:`cnnlab.runs.run.Run` and ``examples`` the split's
    :class:`cnnlab.runs.run.Examples`; for the test split the predictions are the ones training saved.
    """

    run: Any
    examples: Any
    split: str
    logits: np.ndarray  # (N, K): logits, or log-probabilities read from predictions.csv (same softmax)
    targets: np.ndarray  # (N,) int64
    device: Any = "cpu"
    _model: Any = field(default=None, repr=False)

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def out_dir(self) -> Path:
        """Where files about this run are written: the run folder, or ``runs/demo-NAME`` for a built-in run."""
        from cnnlab.runs.builtin import output_dir

        return output_dir(self.run.path)

    @property
    def meta(self) -> dict[str, Any]:
        return self.run.meta

    @property
    def ids(self) -> list[str]:
        return self.examples.ids

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def model(self):
        """The run's torch model in eval mode (a NumPy-engine run is refused with the reason)."""
        if self._model is None:
            self._model = self.run.torch_model(self.device, "this picture")
        return self._model

    @property
    def probs(self) -> np.ndarray:
        return softmax(self.logits.astype(np.float64))

    def rows(self) -> list[dict[str, Any]]:
        return prediction_table(self.logits, self.targets, self.classes, self.ids)

    def confusion(self) -> np.ndarray:
        return confusion_matrix(self.targets, self.logits.argmax(1), len(self.classes))

    def images(self, indices) -> np.ndarray:
        """Display images (n, H, W, C) float in [0, 1], decoded as the model saw them (before normalisation)."""
        return self.examples.images(indices)

    def inputs(self, indices):
        """Normalised model inputs (n, C, H, W) as a float tensor on the model's device."""
        import torch

        return torch.from_numpy(self.examples.inputs(indices)).to(self.device)


def run_predictions(run: Any, split: str = "test", device: Any = "cpu", batch_size: int = 500) -> RunPredictions:
    """A run's predictions on its own ``split``: the exact samples of its split.csv; for the test split
    the predictions training saved (predicted now only for runs older than predictions.csv)."""
    from cnnlab.devices import resolve_device
    from cnnlab.runs.run import open_run

    run = open_run(run) if isinstance(run, (str, Path)) else run
    device = "cpu" if run.engine == "numpy" else resolve_device(device)  # the NumPy engine runs on the CPU
    if split == "test":
        preds, examples = run.test_predictions(device)
        logits = preds.log_probs()
    else:
        examples = run.examples(split)
        logits = run.logits(examples, device, batch_size)
    return RunPredictions(run, examples, split, logits, examples.labels, device)


def interpret_run(run: str | Path, top: int = 25, split: str = "test", device: str = "cpu") -> dict[str, Any]:
    """Everything ``cnnlab interpret`` shows, from Python: predictions of the run's ``split``, the ten
    most-confused pairs, the ``top`` highest-loss rows; writes ``RUN/misclassified.csv`` (a built-in
    run's goes to ``runs/demo-NAME/``).

    Returns {"predictions": RunPredictions, "confused", "worst", "num_wrong", "misclassified_csv"}.
    """
    if top < 1:
        raise CnnlabError(f"top must be at least 1, not {top}")
    rp = run_predictions(run, split=split, device=device)
    rows = rp.rows()
    return {
        "predictions": rp,
        "confused": most_confused(rp.confusion(), rp.classes, top=10),
        "worst": top_losses(rows, top),
        "num_wrong": sum(not r["correct"] for r in rows),
        "misclassified_csv": write_misclassified_csv(rp.out_dir / "misclassified.csv", rows),
    }
