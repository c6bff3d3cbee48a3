"""Diagnosing training, measured on small NumPy-engine networks and scikit-learn's 8x8 digits (a few
seconds on a laptop, no torch): the checks a practitioner runs before and while training.

* the initial loss: an untrained classifier with small logits scores every class about equally, so its
  cross-entropy is about ln K (2.303 for 10 classes); a much larger start means the logits are too big;
* overfitting one batch: a network that cannot drive the loss of 16 images to ~0 has a bug;
* learning curves: a 2-unit network underfits (train and validation both poor), a 256-unit one on 200
  images overfits (validation loss turns up while training loss falls), L2 weight decay narrows the gap;
  early stopping with patience 5 picks the best epoch (and seed 000's printed rule would not stop at all);
* L1 against L2: L1's constant pull makes many weights exactly small, L2 only shrinks them;
* one SGD step, with and without weight decay (seed 002's 0.5 -> 0.497), and why torch's
  ``weight_decay=lambda`` is the gradient of (lambda / 2) * sum(w^2);
* batch size: the minibatch gradient's noise falls as 1 / sqrt(B), which is why the learning rate is
  scaled with the batch size (Goyal et al., Accurate, Large Minibatch SGD, 2017).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.numpy_engine import layers as L
from cnnlab.numpy_engine.losses import CrossEntropyLoss
from cnnlab.numpy_engine.model import Sequential
from cnnlab.numpy_engine.optim import SGD
from cnnlab.teach.base import TeachingResult, new_figure, save_result

N_TRAIN, N_VAL, EPOCHS, PATIENCE = 200, 500, 80, 5
CURVES = {  # name: (hidden units, weight decay) - what each run is meant to show
    "underfit (2 hidden units)": (2, 0.0),
    "overfit (256 units, no decay)": (256, 0.0),
    "256 units, weight decay 3e-3": (256, 3e-3),
}


def _data() -> tuple[np.ndarray, ...]:
    """(train x, train y, validation x, validation y, all x, all y): 8x8 digits flattened to 64 values in [0, 1]."""
    from cnnlab.data.sources import load_digits

    d = load_digits(seed=0)
    x = d["train_images"].reshape(len(d["train_images"]), -1).astype(np.float64) / 255.0  # (N, 64)
    y = d["train_labels"]
    order = np.random.default_rng(0).permutation(len(y))
    tr, va = order[:N_TRAIN], order[N_TRAIN : N_TRAIN + N_VAL]
    return x[tr], y[tr], x[va], y[va], x, y


def _mlp(hidden: int, seed: int = 0, scale: float = 1.0) -> Sequential:
    rng = np.random.default_rng(seed)
    net = Sequential(L.Linear(64, hidden, dtype=np.float64, rng=rng), L.ReLU(),
                     L.Linear(hidden, 10, dtype=np.float64, rng=rng))  # fmt: skip
    for p in net.parameters():
        p.data *= scale
    return net


def _step(net, loss_fn, opt, x, y, l1: float = 0.0) -> float:
    opt.zero_grad()
    loss = loss_fn.forward(net.forward(x), y)
    net.backward(loss_fn.backward())
    if l1:  # L1's subgradient, lambda * sign(w), on the weight matrices only
        for p in net.parameters():
            if p.data.ndim == 2:
                p.grad = p.grad + l1 * np.sign(p.data)
    opt.step()
    return loss


def _evaluate(net, loss_fn, x, y) -> tuple[float, float]:
    logits = net.forward(x)
    return loss_fn.forward(logits, y), float((logits.argmax(1) == y).mean())


def _curves(data) -> dict[str, dict[str, list[float]]]:
    """Full-batch SGD for EPOCHS epochs per run in ``CURVES``; per epoch the train and validation loss/acc."""
    xt, yt, xv, yv, *_ = data
    out = {}
    for name, (hidden, wd) in CURVES.items():
        net, loss_fn = _mlp(hidden), CrossEntropyLoss()
        opt = SGD(net.parameters(), lr=0.2, momentum=0.9, weight_decay=wd)
        h: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "train_acc": [], "val_acc": []}
        for _ in range(EPOCHS):
            _step(net, loss_fn, opt, xt, yt)
            for split, (x, y) in (("train", (xt, yt)), ("val", (xv, yv))):
                loss, acc = _evaluate(net, loss_fn, x, y)
                h[f"{split}_loss"].append(loss)
                h[f"{split}_acc"].append(acc)
        out[name] = h
    return out


def early_stop(val_loss: list[float], patience: int = PATIENCE) -> tuple[int, int]:
    """(best epoch, the epoch training stops at), 1-based: stop after ``patience`` epochs without a new best."""
    best, best_epoch = math.inf, 0
    for epoch, loss in enumerate(val_loss, 1):
        if loss < best:
            best, best_epoch = loss, epoch
        elif epoch - best_epoch >= patience:
            return best_epoch, epoch
    return best_epoch, len(val_loss)


def seed000_rule_stops(val_acc: list[float], window: int = 5, margin: float = 0.05) -> int | None:
    """The epoch at which seed 000's printed rule, max(last 5) < best - 5 %, would stop (None: never)."""
    for epoch in range(window, len(val_acc) + 1):
        if max(val_acc[epoch - window : epoch]) < max(val_acc[:epoch]) - margin:
            return epoch
    return None


def _checks(data) -> dict[str, Any]:
    """Initial loss against ln K, one batch overfitted, L1 against L2, and the batch-size noise."""
    xt, yt, _, _, x_all, y_all = data
    loss_fn = CrossEntropyLoss()
    initial = {f"weights x{s:g}": loss_fn.forward(_mlp(64, scale=s).forward(xt), yt) for s in (0.1, 1.0, 10.0)}
    net = _mlp(64)
    opt = SGD(net.parameters(), lr=0.1, momentum=0.9)
    one_batch = [_step(net, loss_fn, opt, xt[:16], yt[:16]) for _ in range(100)]
    one_batch_acc = float((net.forward(xt[:16]).argmax(1) == yt[:16]).mean())
    small = {}
    for name, l1, wd in (("L1 1e-3", 1e-3, 0.0), ("L2 1e-3", 0.0, 1e-3)):
        net = _mlp(64, seed=1)
        opt = SGD(net.parameters(), lr=0.2, momentum=0.9, weight_decay=wd)
        for _ in range(300):
            _step(net, loss_fn, opt, xt, yt, l1=l1)
        w = np.abs(net.parameters()[0].data).ravel()
        small[name] = {"weights": w, "below_1e-3": float((w < 1e-3).mean())}
    return {"ln_k": math.log(10), "initial_loss": initial, "one_batch_loss": one_batch,
            "one_batch_acc": one_batch_acc, "l1_l2": small, "noise": gradient_noise(x_all, y_all)}  # fmt: skip


def gradient_noise(x: np.ndarray, y: np.ndarray, sizes=(4, 16, 64), draws: int = 40) -> dict[int, float]:
    """RMS distance between minibatch gradients (first layer) and the full-batch gradient, per batch size
    (drawn without replacement from all 1,437 training digits, so the finite-population effect is small)."""
    net, loss_fn, rng = _mlp(64), CrossEntropyLoss(), np.random.default_rng(0)

    def grad(idx):
        for p in net.parameters():
            p.grad = None
        loss_fn.forward(net.forward(x[idx]), y[idx])
        net.backward(loss_fn.backward())
        return net.parameters()[0].grad.copy()

    full = grad(np.arange(len(y)))
    return {b: float(np.sqrt(np.mean([np.sum((grad(rng.choice(len(y), b, replace=False)) - full) ** 2)
                                      for _ in range(draws)]))) for b in sizes}  # fmt: skip


def sgd_step(w: float = 0.5, grad: float = 0.3, lr: float = 0.01, wd: float = 0.1) -> dict[str, float]:
    """Seed 002's update 0.5 - 0.01 * 0.3 = 0.497, then with weight decay as torch applies it."""
    return {"plain": w - lr * grad, "torch_weight_decay": w - lr * (grad + wd * w),
            "penalty_lambda_w2": w - lr * (grad + 2 * wd * w)}  # fmt: skip


def diagnose_example(out_dir: str | Path | None = None) -> TeachingResult:
    from cnnlab.numpy_engine.threads import thread_limit

    data = _data()
    with thread_limit(1):  # small matrices: a second BLAS thread only spin-waits
        values: dict[str, Any] = {"curves": _curves(data), **_checks(data), "sgd_step": sgd_step()}
    over = values["curves"]["overfit (256 units, no decay)"]
    values["early_stop"] = early_stop(over["val_loss"])
    values["seed000_rule"] = seed000_rule_stops(over["val_acc"])
    return save_result(_figure(values), TeachingResult("diagnose", values), out_dir)


def _figure(v: dict[str, Any]):
    fig = new_figure(13, 7.4)
    epochs = np.arange(1, EPOCHS + 1)
    for i, (name, h) in enumerate(v["curves"].items()):
        ax = fig.add_subplot(2, 3, i + 1)
        ax.plot(epochs, h["train_loss"], label="train loss")
        ax.plot(epochs, h["val_loss"], label="validation loss")
        if i == 1:
            best, stop = v["early_stop"]
            ax.axvline(best, color="C2", ls="--", lw=1, label=f"best epoch {best}")
            ax.axvline(stop, color="C3", ls=":", lw=1, label=f"early stop at {stop} (patience {PATIENCE})")
        ax.set_title(f"{name}: val acc {h['val_acc'][-1]:.2f}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy")
        ax.set_ylim(0, 2.6)
        ax.legend(fontsize=7)
    ax = fig.add_subplot(2, 3, 4)
    for name, r in v["l1_l2"].items():
        ax.hist(np.log10(r["weights"] + 1e-8), bins=40, alpha=0.6, label=f"{name}: {r['below_1e-3']:.0%} below 1e-3")
    ax.set_xlabel("log10 |weight| (first layer)")
    ax.set_ylabel("weights")
    ax.set_title("L1 drives weights to ~0, L2 shrinks them", fontsize=9)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(2, 3, 5)
    ax.semilogy(np.arange(1, len(v["one_batch_loss"]) + 1), v["one_batch_loss"])
    ax.axhline(v["ln_k"], color="C3", ls="--", lw=1, label=f"ln 10 = {v['ln_k']:.3f} (chance)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss on the batch (log scale)")
    ax.set_title(f"overfitting one batch of 16: accuracy {v['one_batch_acc']:.0%}", fontsize=9)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(2, 3, 6)
    b = np.array(list(v["noise"]))
    n = np.array(list(v["noise"].values()))
    ax.loglog(b, n, "o-", label="measured")
    ax.loglog(b, n[0] * np.sqrt(b[0] / b), "k--", lw=1, label="1 / sqrt(B)")
    ax.minorticks_off()  # log-axis minor labels would overprint the three batch sizes
    ax.set_xticks(b, [str(x) for x in b])
    ax.set_xlabel("batch size B")
    ax.set_ylabel("gradient noise (RMS)")
    ax.set_title("minibatch gradient noise vs batch size", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def diagnose_text(result: TeachingResult) -> str:
    v = result.values
    init = ", ".join(f"{k}: {loss:.3f}" for k, loss in v["initial_loss"].items())
    lines = [
        f"initial loss (ln 10 = {v['ln_k']:.3f} expected for small logits): {init}",
        f"one batch of 16, 100 SGD steps: loss {v['one_batch_loss'][0]:.3f} -> {v['one_batch_loss'][-1]:.4f}, "
        f"accuracy {v['one_batch_acc']:.0%}",
        "",
        f"learning curves ({N_TRAIN} training images, {N_VAL} validation, full-batch SGD, {EPOCHS} epochs):",
        f"  {'run':<32}{'train loss':>11}{'val loss':>10}{'min val':>9}{'train acc':>10}{'val acc':>9}",
    ]
    for name, h in v["curves"].items():
        lines.append(
            f"  {name:<32}{h['train_loss'][-1]:>11.3f}{h['val_loss'][-1]:>10.3f}{min(h['val_loss']):>9.3f}"
            f"{h['train_acc'][-1]:>10.3f}{h['val_acc'][-1]:>9.3f}"
        )
    best, stop = v["early_stop"]
    rule = v["seed000_rule"]
    lines += [
        f"early stopping on the overfitting run (validation loss, patience {PATIENCE}): best epoch {best}, "
        f"stops at epoch {stop}",
        "the source's printed rule (max of the last 5 val acc < best - 5%) "
        + (f"stops at epoch {rule}" if rule else f"never stops in {EPOCHS} epochs"),
        "",
    ]
    for name, r in v["l1_l2"].items():
        lines.append(f"{name}: {r['below_1e-3']:.0%} of the first layer's weights are below 1e-3 in size")
    s = v["sgd_step"]
    lines += [
        "",
        f"one SGD step, w = 0.5, gradient 0.3, lr 0.01: w = 0.5 - 0.01 * 0.3 = {s['plain']:.4f}",
        f"  with torch's weight_decay = 0.1 (adds 0.1 * w to the gradient): {s['torch_weight_decay']:.4f}",
        f"  with the penalty 0.1 * w^2 (gradient 2 * 0.1 * w): {s['penalty_lambda_w2']:.4f}",
        "",
        "gradient noise (RMS distance of a minibatch gradient from the full one):",
    ]
    first = next(iter(v["noise"].items()))
    for b, n in v["noise"].items():
        lines.append(f"  B = {b:>3}: {n:.4f}   x sqrt(B / {first[0]}) = {n * math.sqrt(b / first[0]):.4f}")
    lines.append("the noise falls as 1/sqrt(B): a larger batch allows a larger step, hence lr proportional to B")
    return "\n".join(lines)
