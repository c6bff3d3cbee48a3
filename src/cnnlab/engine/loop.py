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
from torch import nn

from cnnlab.data.tta import TTA, view_logits
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

    @classmethod
    def from_config(cls, c, device: torch.device) -> StepOptions:
        """The step options of a ``TrainConfig`` (the Trainer, fine-tuning and distillation share them)."""
        return cls(
            grad_clip=c.grad_clip,
            clip_mode=c.grad_clip_mode,
            amp=c.amp,
            accumulate=max(1, c.accumulate),
            l1=c.l1,
            l2=c.l2,
            skip_nonfinite=c.skip_nonfinite,
            sync_every=1 if device.type == "cpu" else 25,
        )


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


def amp_dtype(amp: str) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` (None: full precision); an unknown name is refused."""
    if amp not in AMP_DTYPES:
        raise CnnlabError(f"train.amp must be one of {', '.join(AMP_DTYPES)}, not {amp!r}")
    return AMP_DTYPES[amp]


def amp_warning(device: torch.device, amp: str) -> str | None:
    """A warning line when ``amp`` will be slower than full precision on ``device``, else None.

    bf16 autocast pays on CPUs whose oneDNN has bf16 kernels (AVX-512, faster still with AVX-512 BF16
    or AMX): MNIST's and CIFAR-10's fast recipes rely on it. Elsewhere every conversion is emulated."""
    if amp == "bf16" and device.type == "cpu" and not cpu_has_bf16_kernels():
        return (
            "warning: train.amp bf16 on this CPU runs without bf16 kernels (no AVX-512) and is slower than full "
            "precision; set --train.amp none"
        )
    return None


def cpu_has_bf16_kernels() -> bool:
    """Whether oneDNN, behind torch's CPU convolutions, has bf16 kernels on this processor."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: torch.device, amp: str):
    """Autocast context for ``amp`` (bf16 works on CPU and GPU; fp16 wants a GPU and a grad scaler)."""
    dtype = amp_dtype(amp)
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


@dataclass
class EpochParts:
    """The optional collaborators of a training epoch; plain training needs none of them."""

    schedule: object | None = None  # step_batch() after every optimiser step
    scaler: object | None = None  # torch.amp.GradScaler (fp16)
    ema: object | None = None  # AveragedModel, updated after every optimiser step
    mixer: Callable | None = None  # MixUp/CutMix: (x, y) -> (x, y_b, lam)
    forward: Callable | None = None  # what the batch goes through instead of the model (DDP, compiled)
    progress: object | None = None  # a tqdm bar
    on_step: Callable[[EpochState], None] | None = None  # after every optimiser step (step checkpoints)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    opts: StepOptions | None = None,
    parts: EpochParts | None = None,
    *,
    epoch: int = 0,
    state: EpochState | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns {'train_loss', 'train_acc', 'lr'} averaged over samples.

    ``opts`` says how a step is taken (accumulation, AMP, clipping, penalties, NaN skips), ``parts``
    holds the optional collaborators, and ``state`` carries running sums across a mid-epoch resume.
    """
    opts, parts = opts or StepOptions(), parts or EpochParts()
    state = state if state is not None else EpochState()
    forward = parts.forward or model
    model.train()
    dev = next(model.parameters()).device
    pending: list[tuple[int, int, float, int, torch.Tensor]] = []  # losses not yet read back
    correct = torch.zeros((), dtype=torch.long, device=dev)  # stays on the device: no sync per step
    params = [p for p in model.parameters() if p.requires_grad]
    for x, y in loader:  # x: (B, C, H, W), y: (B,)
        mix = None
        if parts.mixer is not None:
            x, y_b, lam = parts.mixer(x, y)
            mix = (y_b, lam)
        with autocast(dev, opts.amp):
            logits, loss = _loss(model, forward, x, y, loss_fn, mix, opts)
        pending.append((state.global_step + 1, state.batches, base_lr(optimizer), len(y), loss.detach()))
        if (opts.skip_nonfinite or len(pending) >= opts.sync_every) and _drain(pending, state, epoch, opts):
            optimizer.zero_grad(set_to_none=True)  # a non-finite loss that may be skipped: drop its step
            state.batches += 1
            continue
        (parts.scaler.scale(loss) if parts.scaler else loss).div(opts.accumulate).backward()
        state.batches += 1
        state.seen += len(y)
        correct += (logits.argmax(1) == y).sum()
        if state.batches % opts.accumulate == 0 or state.batches == len(loader):  # every `accumulate` batches
            _optimizer_step(optimizer, params, parts.scaler, opts)
            _after_step(model, parts, state, pending, correct, epoch, opts)
        if parts.progress is not None:
            _show_progress(parts.progress, state, correct, opts)
    _drain(pending, state, epoch, opts)
    state.correct += int(correct)
    return {
        "train_loss": state.loss_sum / max(state.seen, 1),
        "train_acc": state.correct / max(state.seen, 1),
        "lr": base_lr(optimizer),
    }


def _after_step(model, parts: EpochParts, state: EpochState, pending, correct, epoch: int, opts: StepOptions) -> None:
    """Count the step, move the schedule and the EMA on, and let ``on_step`` see up-to-date sums."""
    state.global_step += 1
    if parts.schedule is not None:
        parts.schedule.step_batch()
    if parts.ema is not None:
        parts.ema.update_parameters(model)
    if parts.on_step is not None:
        _drain(pending, state, epoch, opts)
        state.correct += int(correct)
        correct.zero_()
        parts.on_step(state)


def _show_progress(progress, state: EpochState, correct: torch.Tensor, opts: StepOptions) -> None:
    """Advance the bar and show the running loss and accuracy (Keras-style), from sums already read
    back: on a GPU (sync_every > 1) only every ``sync_every`` steps, so the bar adds no synchronisation."""
    progress.update(1)
    if state.seen and state.batches % opts.sync_every == 0:
        acc = (state.correct + int(correct)) / state.seen
        progress.set_postfix(loss=f"{state.loss_sum / state.seen:.4f}", acc=f"{acc:.4f}", refresh=False)


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
            out = view_logits(model, x, views)
        logits.append(out.cpu())
        targets.append(y.cpu())
    if not logits:
        raise CnnlabError("nothing to evaluate: the data split is empty")
    return torch.cat(logits).numpy(), torch.cat(targets).numpy()


def evaluate(
    model: nn.Module, loader: Iterable, prefix: str = "val", tta: str = "none", amp: str = "none"
) -> dict[str, float]:
    """Loss, accuracy and macro-F1 of ``model`` on ``loader``, keys prefixed (``val_loss``...)."""
    from cnnlab.evaluation.metrics import cross_entropy, macro_f1

    logits, targets = predict(model, loader, tta=tta, amp=amp)
    preds = logits.argmax(1)
    return {
        f"{prefix}_loss": cross_entropy(logits, targets),
        f"{prefix}_acc": float((preds == targets).mean()),
        f"{prefix}_macro_f1": macro_f1(targets, preds, logits.shape[1]),
    }


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """``optim.lr`` as the schedule has it now: a group's rate divided by its ``group_lr`` multiplier.

    Under discriminative fine-tuning rates this is the head's rate; under a recipe's per-group rates
    (airbench's BatchNorm shifts at 442x) it is the rate the recipe names, not the largest one."""
    for g in optimizer.param_groups:
        scale = g.get("lr_scale", 1.0)  # absent in checkpoints written before lr_scale existed
        # a group frozen by a zero rate, or on its own clock (optim.group_epochs), says nothing about optim.lr
        if scale and not g.get("train_epochs"):
            return g["lr"] / scale
    return optimizer.param_groups[0]["lr"]
