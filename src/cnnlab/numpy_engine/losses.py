"""Softmax cross-entropy for the NumPy engine, named and behaving like ``torch.nn.CrossEntropyLoss``.

The loss takes raw scores (logits) and integer class labels and fuses softmax with the negative log
likelihood, which is both cheaper and numerically stable: ``-log softmax(z)_c = logsumexp(z) - z_c``
computed after subtracting the row maximum. Its gradient is the famous ``softmax(z) - onehot(y)``
(seed 000, appendix B), divided by the batch size for the mean reduction.
"""

from __future__ import annotations

import numpy as np

from cnnlab.numpy_engine.functional import log_softmax


class CrossEntropyLoss:
    """Mean (or summed) cross-entropy of logits (B, K) against labels (B,) in [0, K).

    ``label_smoothing`` mixes the one-hot target with the uniform distribution, as torch does:
    q = (1 - eps) * onehot + eps / K. Call ``forward`` (or the object) then ``backward()``.
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self._cache: tuple | None = None

    def _target(self, labels: np.ndarray, k: int, dtype: np.dtype) -> np.ndarray:
        q = np.zeros((labels.shape[0], k), dtype=dtype)  # (B, K)
        q[np.arange(labels.shape[0]), labels] = 1
        if self.label_smoothing:
            q = q * (1 - self.label_smoothing) + self.label_smoothing / k
        return q

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        labels = np.asarray(labels, dtype=np.int64)
        logp = log_softmax(logits)  # (B, K)
        q = self._target(labels, logits.shape[1], logits.dtype)
        per_sample = -(q * logp).sum(axis=1)  # (B,)
        self._cache = (logp, q)
        total = per_sample.sum()
        return float(total / logits.shape[0] if self.reduction == "mean" else total)

    __call__ = forward

    def backward(self) -> np.ndarray:
        """dL/dlogits = softmax(z) - q (divided by B for the mean)."""
        logp, q = self._cache
        grad = np.exp(logp) - q
        if self.reduction == "mean":
            grad /= logp.shape[0]
        return grad
