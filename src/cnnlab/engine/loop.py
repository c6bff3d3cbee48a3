"""The training and evaluation loops: plain functions you can read top to bottom.

``train_one_epoch`` runs one pass over the training batches and returns averaged metrics. One step
is: (optional MixUp/CutMix) -> forward under autocast -> loss (+ L1/L2 penalty) -> non-finite check
-> backward (scaled for fp16) -> every ``accumulate`` batches: unscale, clip by norm or value,
optimiser step, schedule step, EMA update. ``predict`` returns logits and targets for a whole
loader (averaging test-time-augmentation views when asked); ``evaluate`` turns them into loss,
accuracy and macro-F1. Models may return ``(logits, aux_logits...)`` in training mode (GoogLeNet's
auxiliary classifiers); the auxiliary losses are added with the model's ``aux_loss_weight`` (0.3 in
the Inception paper).

Per-step synchronisation is avoided where it is not needed: running sums stay on the device and
the loss is read back once per step on CPU (free there) but only every ``sync_every`` steps on a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.engine.losses import weight_penalty
from cnnlab.errors import CnnlabError
from cnnlab.registry import Registry


class NonFiniteLossError(CnnlabError):
    """The loss became NaN or infinite; training stops before anything is saved."""


AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CLIPPERS: Registry = Registry("gradient clipping mode")
CLIPPERS.register("norm")(lambda params, v: nn.utils.clip_grad_norm_(params, v))
CLIPPERS.register("value")(lambda params, v: nn.utils.clip_grad_value_(params, v))


@dataclass
class StepOptions:
    """How one optimiser step is taken (everything beyond plain forward/backward/step)."""

    grad_clip: float | None = None
    clip_mode: str = "norm"  # norm | value
    amp: str = "none"  # none | bf16 | fp16
    accumulate: int = 1  # batches per optimiser step
    l1: float = 0.0
    l2: float = 0.0
    skip_nonfinite: int = 0  # steps with a NaN/Inf loss that may be skipped before stopping
    sync_every: int = 1  # read the loss back every N steps (1 on CPU; larger on a GPU)
    on_loss: Callable[[int, int, int, float], None] | None = None  # (global step, epoch, step, loss) when read


@dataclass
class EpochState:
    """Running sums of the current epoch and counters of the whole run (saved for mid-epoch resume)."""

    batches: int = 0  # batches of this epoch already consumed
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    global_step: int = 0  # optimiser steps over the run
    skipped: int = 0  # non-finite steps skipped over the run
    step_log: list = field(default_factory=list)  # (global_step, epoch, lr, loss) rows not yet written
    messages: list = field(default_factory=list)  # warnings for the Trainer to print (skipped steps)

    def start_epoch(self) -> None:
        self.batches, self.loss_sum, self.correct, self.seen = 0, 0.0, 0, 0


def _split_output(out) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    if isinstance(out, torch.Tensor):
        return out, ()
    out = tuple(out)
    return out[0], tuple(o for o in out[1:] if o is not None)


def autocast(device: torch.device, amp: str):
    """Autocast context for ``amp`` (bf16 works on CPU and GPU; fp16 wants a GPU and a grad scaler)."""
    if amp not in AMP_DTYPES:
        raise CnnlabError(f"train.amp must be one of {sorted(AMP_DTYPES)}, not {amp!r}")
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _loss(model, forward, x, y, loss_fn, mix, opts: StepOptions):
    logits, aux = _split_output(forward(x))  # logits: (B, num_classes)
    aux_weight = getattr(model, "aux_loss_weight", 0.3)

    def crit(out):
        if mix is None:
            return loss_fn(out, y)
        y_b, lam = mix
        return lam * loss_fn(out, y) + (1 - lam) * loss_fn(out, y_b)

    loss = crit(logits)
    for a in aux:
        loss = loss + aux_weight * crit(a)
    penalty = weight_penalty(model, opts.l1, opts.l2)
    if penalty is not None:
        loss = loss + penalty
    return logits, loss


def _nonfinite(epoch: int, step: int, value: float) -> NonFiniteLossError:
    return NonFiniteLossError(
        f"the loss became {value} at epoch {epoch + 1}, step {step + 1}. Likely causes: a learning rate too "
        "high for this model, no gradient clipping, fp16 overflow, or bad input values. Lower --optim.lr, keep "
        "--train.grad_clip 1.0, and check the data (or allow a few skips with --train.skip_nonfinite K). "
        "Earlier checkpoints were left untouched."
    )


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
    opts: StepOptions | None = None,
    state: EpochState | None = None,
    scaler=None,
    ema=None,
    mixer=None,
    forward: Callable | None = None,
    on_step: Callable[[EpochState], None] | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns {'train_loss', 'train_acc', 'lr'} averaged over samples.

    ``state`` carries running sums across a mid-epoch resume; ``on_step(state)`` runs after every
    optimiser step (the Trainer saves step checkpoints there); ``forward`` is the (compiled) model.
    """
    opts = opts or StepOptions(grad_clip=grad_clip)
    state = state if state is not None else EpochState()
    forward = forward or model
    model.train()
    dev = next(model.parameters()).device
    pending: list[tuple[int, int, float, torch.Tensor]] = []  # losses not yet read back
    correct = torch.zeros((), dtype=torch.long, device=dev)
    params = [p for p in model.parameters() if p.requires_grad]
    for x, y in loader:
        step = state.batches
        mix = None
        if mixer is not None:
            x, y_b, lam = mixer(x, y)
            mix = (y_b, lam)
        with autocast(dev, opts.amp):
            logits, loss = _loss(model, forward, x, y, loss_fn, mix, opts)
        lr = optimizer.param_groups[0]["lr"]
        pending.append((state.global_step + 1, step, lr, len(y), loss.detach()))
        must_read = opts.skip_nonfinite or len(pending) >= opts.sync_every
        if must_read and _drain(pending, state, epoch, opts):  # non-finite, and a skip is allowed
            optimizer.zero_grad(set_to_none=True)
            state.batches += 1
            continue
        (scaler.scale(loss) if scaler else loss).div(opts.accumulate).backward()
        state.batches += 1
        state.seen += len(y)
        correct += (logits.argmax(1) == y).sum()
        if state.batches % opts.accumulate == 0 or state.batches == len(loader):
            _optimizer_step(optimizer, params, scaler, opts)
            state.global_step += 1
            if schedule is not None:
                schedule.step_batch()
            if ema is not None:
                ema.update_parameters(model)
            if on_step is not None:
                _drain(pending, state, epoch, opts)
                state.correct += int(correct)
                correct.zero_()
                on_step(state)
        if progress is not None:
            progress.update(1)
    _drain(pending, state, epoch, opts)
    state.correct += int(correct)
    return {
        "train_loss": state.loss_sum / max(state.seen, 1),
        "train_acc": state.correct / max(state.seen, 1),
        "lr": optimizer.param_groups[0]["lr"],
    }


def _optimizer_step(optimizer, params, scaler, opts: StepOptions) -> None:
    if scaler is not None:
        if opts.grad_clip:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            CLIPPERS.get(opts.clip_mode)(params, opts.grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        if opts.grad_clip:
            CLIPPERS.get(opts.clip_mode)(params, opts.grad_clip)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _drain(pending: list, state: EpochState, epoch: int, opts: StepOptions) -> bool:
    """Read back pending losses: log them, add them to the sums; True when the last one must be skipped."""
    if not pending:
        return False
    values = torch.stack([p[4] for p in pending]).float().cpu().tolist()
    skip_last = False
    for (gstep, step, lr, n, _), value in zip(pending, values):
        if not np.isfinite(value):
            state.skipped += 1
            if state.skipped > opts.skip_nonfinite or (gstep, step) != pending[-1][:2]:
                pending.clear()
                raise _nonfinite(epoch, step, value)
            state.messages.append(
                f"warning: skipped step {step + 1} of epoch {epoch + 1}: the loss was {value} "
                f"({state.skipped} of {opts.skip_nonfinite} allowed skips used)"
            )
            skip_last = True
            continue
        if opts.on_loss is not None:  # the divergence guard: may raise before this step is applied
            opts.on_loss(gstep, epoch, step, value)
        state.step_log.append((gstep, epoch + 1, lr, value))
        state.loss_sum += value * n
    pending.clear()
    return skip_last


# ---- evaluation ---------------------------------------------------------------------------------

TTA: Registry = Registry("test-time augmentation")


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    # Translate by (dy, dx) pixels with zero fill: (B, C, H, W) -> same shape.
    h, w = x.shape[-2:]
    p = max(abs(dy), abs(dx))
    padded = F.pad(x, (p, p, p, p))
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


TTA.register("none")(lambda: [lambda x: x])
TTA.register("flip")(lambda: [lambda x: x, lambda x: x.flip(3)])
TTA.register("flip-translate")(
    lambda: [lambda x: x, lambda x: x.flip(3), lambda x: _shift(x, 2, 2), lambda x: _shift(x, -2, -2)]
)


@torch.inference_mode()
def predict(model: nn.Module, loader: Iterable, tta: str = "none", amp: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, num_classes) as float32 and targets (N,) for every batch of ``loader``.

    With test-time augmentation the softmax probabilities of the views are averaged and their log
    is returned, so argmax and cross-entropy work on the result as on plain logits.
    """
    model.eval()
    views = TTA.create(tta)
    dev = next(model.parameters()).device
    logits, targets = [], []
    for x, y in loader:
        with autocast(dev, amp):
            if len(views) == 1:
                out = _split_output(model(x))[0].float()
            else:
                probs = sum(F.softmax(_split_output(model(v(x)))[0].float(), 1) for v in views) / len(views)
                out = probs.clamp_min(1e-12).log()
        logits.append(out.cpu())
        targets.append(y.cpu())
    if not logits:
        raise CnnlabError("nothing to evaluate: the data split is empty")
    return torch.cat(logits).numpy(), torch.cat(targets).numpy()


def evaluate(model: nn.Module, loader: Iterable, prefix: str = "val", tta: str = "none") -> dict[str, float]:
    """Loss, accuracy and macro-F1 of ``model`` on ``loader``, keys prefixed (``val_loss``...)."""
    from cnnlab.evaluation.metrics import cross_entropy, macro_f1

    logits, targets = predict(model, loader, tta=tta)
    preds = logits.argmax(1)
    return {
        f"{prefix}_loss": cross_entropy(logits, targets),
        f"{prefix}_acc": float((preds == targets).mean()),
        f"{prefix}_macro_f1": macro_f1(targets, preds, logits.shape[1]),
    }
