"""The training and evaluation loops: plain functions you can read top to bottom.

``train_one_epoch`` runs one pass over the training batches and returns averaged metrics;
``predict`` returns logits and targets for a whole loader; ``evaluate`` turns those into loss,
accuracy and macro-F1. Models may return ``(logits, aux_logits...)`` in training mode
(GoogLeNet's auxiliary classifiers); the auxiliary losses are added with the model's
``aux_loss_weight`` (0.3 in the Inception paper).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from cnnlab.errors import CnnlabError


class NonFiniteLossError(CnnlabError):
    """The loss became NaN or infinite; training stops before anything is saved."""


def _split_output(out) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    if isinstance(out, torch.Tensor):
        return out, ()
    out = tuple(out)
    return out[0], tuple(o for o in out[1:] if o is not None)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    *,
    schedule=None,
    grad_clip: float | None = None,
    epoch: int = 0,
    progress=None,
) -> dict[str, float]:
    """One pass over ``loader``; returns {'train_loss', 'train_acc', 'lr'} averaged over samples."""
    model.train()
    aux_weight = getattr(model, "aux_loss_weight", 0.3)
    loss_sum, correct, seen = 0.0, 0, 0
    for step, (x, y) in enumerate(loader):
        logits, aux = _split_output(model(x))  # logits: (B, num_classes)
        loss = loss_fn(logits, y)
        for a in aux:
            loss = loss + aux_weight * loss_fn(a, y)
        loss_value = float(loss.detach())  # one sync per step; also feeds the NaN check below
        if not np.isfinite(loss_value):
            raise NonFiniteLossError(
                f"the loss became {loss_value} at epoch {epoch + 1}, step {step + 1}. Likely causes: a learning "
                "rate too high for this model, no gradient clipping, or bad input values. Lower --optim.lr, "
                "keep --train.grad_clip 1.0, and check the data. Earlier checkpoints were left untouched."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if schedule is not None:
            schedule.step_batch()
        n = len(y)
        loss_sum += loss_value * n
        correct += int((logits.argmax(1) == y).sum())
        seen += n
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
    return {
        "train_loss": loss_sum / max(seen, 1),
        "train_acc": correct / max(seen, 1),
        "lr": optimizer.param_groups[0]["lr"],
    }


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, num_classes) as float32 and targets (N,) for every batch of ``loader``."""
    model.eval()
    logits, targets = [], []
    for x, y in loader:
        out, _ = _split_output(model(x))
        logits.append(out.float().cpu())
        targets.append(y.cpu())
    if not logits:
        raise CnnlabError("nothing to evaluate: the data split is empty")
    return torch.cat(logits).numpy(), torch.cat(targets).numpy()


def evaluate(model: nn.Module, loader: Iterable, prefix: str = "val") -> dict[str, float]:
    """Loss, accuracy and macro-F1 of ``model`` on ``loader``, keys prefixed (``val_loss``...)."""
    from cnnlab.evaluation.metrics import cross_entropy, macro_f1

    logits, targets = predict(model, loader)
    preds = logits.argmax(1)
    return {
        f"{prefix}_loss": cross_entropy(logits, targets),
        f"{prefix}_acc": float((preds == targets).mean()),
        f"{prefix}_macro_f1": macro_f1(targets, preds, logits.shape[1]),
    }
