"""``predictions.csv``: a run's test predictions, written once by training and read by every consumer.

One row per test sample, in the order of the test rows of ``split.csv``::

    id,true,pred,confidence,p_0,p_1,...,p_{K-1}

``id`` is the sample's ``source`` in ``split.csv`` (a file path relative to the data folder, or the
index in the dataset's test split); ``true`` and ``pred`` are class names; ``p_k`` is the softmax
probability of class k (the order of ``model.json``'s ``classes``), written with 9 significant
digits in exponent form so that even tiny probabilities keep their value. Evaluate, interpret, the
HTML report and export parity read this file instead of predicting the test set again.
NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic, tables


@dataclass
class Predictions:
    ids: list[str]
    targets: np.ndarray  # (N,) int64
    probs: np.ndarray  # (N, K) float64, rows sum to 1

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(1)

    def log_probs(self) -> np.ndarray:
        """(N, K) log-probabilities: as logits, they give the same softmax, loss and ranking."""
        return np.log(np.maximum(self.probs, 1e-300))


def write_predictions(path: str | Path, ids: list[str], targets, probs, classes: list[str]) -> Path:
    """Write ``predictions.csv`` atomically; ids and class names are escaped against spreadsheet formulas
    (:mod:`cnnlab.files.tables`), and :func:`read_predictions` reads them back unchanged."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets).astype(np.int64)
    if probs.shape != (len(ids), len(classes)) or len(targets) != len(ids):
        raise ValueError(
            f"predictions: {len(ids)} ids, {len(targets)} targets, probs {probs.shape}, {len(classes)} classes"
        )
    path = Path(path)
    with atomic.atomic_write(path, "w", newline="") as f:
        w = tables.writer(f)
        w.writerow(["id", "true", "pred", "confidence", *(f"p_{k}" for k in range(len(classes)))])
        for sid, t, p in zip(ids, targets, probs):
            k = int(p.argmax())
            w.writerow([sid, classes[int(t)], classes[k], f"{p[k]:.9e}", *(f"{v:.9e}" for v in p)])
    return path


def read_predictions(path: str | Path, classes: list[str]) -> Predictions:
    """Read ``predictions.csv``; CnnlabError if it does not fit ``classes``."""
    index = {c: i for i, c in enumerate(classes)}
    ids, targets, probs = [], [], []
    try:
        with open(path, newline="") as f:
            reader = tables.reader(f)
            head = next(reader)
            cols = [f"p_{k}" for k in range(len(classes))]
            if head[:4] != ["id", "true", "pred", "confidence"] or head[4:] != cols:
                raise ValueError(f"header {head[:6]}... does not match {len(classes)} classes")
            for row in reader:
                ids.append(row[0])
                targets.append(index[row[1]])
                probs.append([float(v) for v in row[4:]])
    except (OSError, ValueError, KeyError, StopIteration, IndexError) as exc:
        raise CnnlabError(f"{path} cannot be read ({exc}); delete it and run 'cnnlab evaluate' to rebuild it") from None
    p = np.asarray(probs, dtype=np.float64).reshape(len(ids), len(classes))
    return Predictions(ids, np.asarray(targets, dtype=np.int64), p)
