"""Optimiser registry: every optimiser of seed 002's list, built from ``OptimConfig``.

Each entry turns parameter groups and the config into a torch optimiser. torch provides SGD
(momentum, Nesterov), Adagrad, Adadelta, RMSprop, Adam, AdamW, RAdam and NAdam; LAMB (You et al.
2020, layer-wise trust ratio for large batches) is written here because torch has none, and
:class:`Lookahead` (Zhang et al. 2019: slow weights pulled towards the fast ones every k steps)
wraps any of them. :class:`Muon` (Jordan et al. 2024, the optimiser of the CIFAR-10 and GPT
speed records) orthogonalises the momentum of every convolution filter bank and hidden weight
matrix and steps the rest (biases, normalisation shifts, the classifier head) with Nesterov SGD.
Weight decay comes in two forms (Loshchilov & Hutter 2019): L2, added to the gradient before the
adaptive scaling, and decoupled, shrinking the weights directly; ``weight_decay_mode`` picks one for
any optimiser (``auto`` keeps each optimiser's own: decoupled for AdamW and LAMB, L2 for the rest).
Parameter groups give per-group LRs (``group_lr``: name glob -> LR) and optionally no decay on
biases and normalisation weights. Seed 000's recipe is Adam with
lr 1e-3 and weight decay 1e-4.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Callable

import torch
from torch import nn

from cnnlab.config import DEFAULT_LR, OptimConfig
from cnnlab.errors import CnnlabError
from cnnlab.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
DECOUPLED_BY_DEFAULT = {"adamw", "lamb"}  # optimisers whose own weight decay is decoupled


FUSED_DEVICES = ("cpu", "cuda")  # where torch has fused SGD, Adam and AdamW kernels


def fused(groups) -> dict:
    """``{"fused": True}`` where every parameter is a floating tensor on a CPU or CUDA device, else ``{}``.

    torch's fused kernel updates each tensor in one pass instead of one per operation and per tensor:
    AdamW over EfficientNet-Lite0's 3.4 M parameters took 4.2-4.4 ms a step fused against 20.5-21.2 ms
    with torch's default per-tensor loop and 14.3-15.5 ms with ``foreach``, each after the others' steps
    had pushed its tensors out of the caches, as a training step does (one core of the 2-core Xeon,
    ``benchmarks/finetune_parts.py``; back to back, fused: 3.1-3.4 ms). Same update, other rounding: a
    run resumes with the same kernel, so resume stays exact."""
    ps = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    ok = ps and all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in ps)
    return {"fused": True} if ok and len({p.device for p in ps}) == 1 else {}


@OPTIMIZERS.register("sgd")
def sgd(params, c: OptimConfig, wd: float) -> torch.optim.Optimizer:
    """SGD with (Nesterov) momentum; momentum 0 gives plain SGD."""
    return torch.optim.SGD(
        params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov and c.momentum > 0, weight_decay=wd, **fused(params)
    )


@OPTIMIZERS.register("adagrad")
def adagrad(params, c: OptimConfig, wd: float) -> torch.optim.Optimizer:
    """Adagrad (Duchi et al. 2011): per-weight LR shrinking with the sum of squared gradients."""
    return torch.optim.Adagrad(params, lr=c.lr, eps=c.eps, weight_decay=wd)


@OPTIMIZERS.register("adadelta")
def adadelta(params, c: OptimConfig, wd: float) -> torch.optim.Optimizer:
    """Adadelta (Zeiler 2012): running averages of squared gradients and updates; lr 1.0 is its usual scale."""
    return torch.optim.Adadelta(params, lr=c.lr, rho=c.rho, eps=c.eps, weight_decay=wd)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params, c: OptimConfig, wd: float) -> torch.optim.Optimizer:
    """RMSprop (Hinton 2012) with optional momentum."""
    return torch.optim.RMSprop(params, lr=c.lr, alpha=c.alpha, momentum=c.momentum, eps=c.eps, weight_decay=wd)


@OPTIMIZERS.register("adam")
def adam(params, c: OptimConfig, wd: float) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba 2015) with L2 weight decay."""
    return torch.optim.Adam(params, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=wd, **fused(params))


@OPTIMIZERS.register("adamw")
def adamw(params, c: OptimConfig, wd: float) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019)."""
    return torch.optim.AdamW(params, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=wd, **fused(params))


@OPTIMIZERS.register("radam")
def radam(params, c: OptimConfig, wd: float) -> torch.optim.Optimizer:
    """Rectified Adam (Liu et al. 2020): turns the adaptive step on only once its variance is tractable."""
    return torch.optim.RAdam(params, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=wd)


@OPTIMIZERS.register("nadam")
def nadam(params, c: OptimConfig, wd: float) -> torch.optim.Optimizer:
    """Adam with Nesterov momentum (Dozat 2016)."""
    return torch.optim.NAdam(params, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=wd)


@OPTIMIZERS.register("lamb")
def lamb(params, c: OptimConfig, wd: float) -> torch.optim.Optimizer:
    """LAMB (You et al. 2020): Adam direction with decoupled decay, rescaled per tensor by ||w|| / ||update||."""
    return Lamb(params, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=wd)


class Lamb(torch.optim.Optimizer):
    """Layer-wise Adaptive Moments: ``w -= lr * r * u`` with ``u = adam_step + wd * w``, ``r = ||w|| / ||u||``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = _closure_loss(closure)
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(p.grad, 1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                update = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                w_norm, u_norm = p.norm(), update.norm()
                # Trust ratio 1 when either norm is zero (fresh zero-initialised tensors, zero updates).
                trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                p.add_(update * trust, alpha=-group["lr"])
        return loss


def _closure_loss(closure: Callable | None):
    """The loss ``closure`` recomputes with gradients on (torch's optimiser ``step`` contract), or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


@OPTIMIZERS.register("muon")
def muon(params, c: OptimConfig, wd: float) -> torch.optim.Optimizer:
    """Muon: orthogonalised momentum for filters and hidden matrices (``lr``, ``muon_momentum``), SGD for the rest."""
    kw = dict(momentum=c.momentum, nesterov=c.nesterov, weight_decay=wd, muon_momentum=c.muon_momentum)
    return Muon(params, lr=c.lr, ns_steps=c.muon_ns_steps, **kw)


def orthogonalise(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """An approximately orthogonal matrix with the singular vectors of ``g`` (rows x cols).

    Five-term Newton-Schulz iteration X <- aX + b(XX^T)X + c(XX^T)^2 X on g / ||g||, with the
    coefficients (3.4445, -4.7750, 2.0315) of the Muon write-up: chosen for speed, they lift every
    singular value above a hundredth of the largest into roughly [0.6, 1.2] in five steps, rather than
    converging exactly to 1 (airbench94_muon stops after three, which leaves the smallest directions
    further below 1). Runs in bf16, like the reference; the matrices are small next to a training step.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.to(torch.bfloat16)
    x = x / (x.norm() + 1e-7)  # every singular value <= 1
    wide = x.shape[0] <= x.shape[1]
    if not wide:
        x = x.T  # iterate on the smaller Gram matrix
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.T).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Muon (Jordan et al. 2024) for the tensors of ``orthogonal`` groups, Nesterov SGD for the others.

    An orthogonal tensor W (out x in x kh x kw, or out x in) is first rescaled to norm sqrt(out), then
    stepped by ``lr`` times the orthogonalised Nesterov momentum of its gradient, viewed as an
    out x (everything else) matrix: every singular direction of the layer moves by about the same
    amount, however unevenly the gradient is spread over them. The rescaling is airbench94_muon's:
    with BatchNorm after each convolution only W's direction matters, and a fixed norm keeps the LR's
    effect the same all run (so weight decay has nothing to do there and is not applied). The other
    tensors take torch's SGD step (``momentum``, ``nesterov``, coupled ``weight_decay``). ``ns_steps``
    is the number of Newton-Schulz iterations per orthogonalisation (``optim.muon_ns_steps``).
    ``cnnlab.engine.optim.param_groups`` marks convolution filters and weight matrices as orthogonal,
    except the classifier head's. (``torch.optim.Muon`` takes 2-D tensors only and leaves the rest to a
    second optimiser; one optimiser for both keeps schedules, ``group_lr`` and checkpoints as they are.)
    """

    def __init__(self, params, lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.0, muon_momentum=0.95, ns_steps=5):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(params, dict(defaults, muon_momentum=muon_momentum, orthogonal=False, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = _closure_loss(closure)
        for group in self.param_groups:
            ortho = group["orthogonal"]
            mu = group["muon_momentum"] if ortho else group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if ortho or not group["weight_decay"] else p.grad.add(p, alpha=group["weight_decay"])
                if mu:
                    buf = self.state[p].get("momentum_buffer")
                    if buf is None:
                        buf = self.state[p]["momentum_buffer"] = g.clone()
                    else:
                        buf.mul_(mu).add_(g)
                    g = g.add(buf, alpha=mu) if group["nesterov"] else buf
                if ortho and p.ndim >= 2:
                    p.mul_(p.shape[0] ** 0.5 / p.norm().clamp_min(1e-12))
                    g = orthogonalise(g.reshape(len(g), -1), group.get("ns_steps", 5)).view_as(p)
                p.add_(g, alpha=-group["lr"])
        return loss


class Lookahead(torch.optim.Optimizer):
    """Lookahead (Zhang et al. 2019) around any optimiser: every ``k`` steps, slow += alpha * (fast - slow)
    and the fast weights restart from the slow ones. ``param_groups`` are the inner optimiser's, so LR
    schedules act on it directly; ``state_dict`` holds the inner state plus the slow weights."""

    def __init__(self, inner: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5):
        self.inner, self.k, self.alpha = inner, k, alpha
        self.defaults = inner.defaults
        self.steps = 0
        self.slow = [[p.detach().clone() for p in g["params"]] for g in inner.param_groups]
        self._optimizer_step_pre_hooks, self._optimizer_step_post_hooks = {}, {}

    # Delegated, not copied: the inner optimiser's load_state_dict replaces its param_groups list.
    @property
    def param_groups(self) -> list[dict]:
        return self.inner.param_groups

    @property
    def state(self):
        return self.inner.state

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = self.inner.step(closure)
        self.steps += 1
        if self.steps % self.k == 0:
            for group, slow in zip(self.param_groups, self.slow):
                for p, s in zip(group["params"], slow):
                    s.add_(p - s, alpha=self.alpha)
                    p.copy_(s)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict(), "steps": self.steps, "slow": [list(s) for s in self.slow]}

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state["inner"])
        self.steps = int(state["steps"])
        with torch.no_grad():
            for mine, saved in zip(self.slow, state["slow"]):
                for s, v in zip(mine, saved):
                    s.copy_(v)

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, {self.inner!r})"


def param_groups(model: nn.Module, c: OptimConfig) -> list[dict]:
    """Groups by (LR, decay): ``group_lr`` globs over parameter names (first match wins), and with
    ``no_decay_norm_bias`` every 1-D tensor (biases, BatchNorm/LayerNorm scales) gets no decay.
    Parameters matched by a ``group_epochs`` glob get a group of their own marked ``train_epochs``
    (see :class:`cnnlab.engine.schedulers.Schedule`).

    Frozen parameters are included: they get no gradient, so the optimiser (and the weight-decay
    hooks) skip them, and blocks unfrozen later (progressive, staged fine-tuning) train in the same
    optimiser."""
    c = _with_lr(c)
    head = _head_prefix(model) if c.name == "muon" else None
    groups: dict[tuple[float, bool, bool, float | None], list] = {}
    for name, p in model.named_parameters():
        lr = next((v for pat, v in c.group_lr.items() if fnmatch.fnmatch(name, pat)), c.lr)
        epochs = next((float(v) for pat, v in c.group_epochs.items() if fnmatch.fnmatch(name, pat)), None)
        decay = not (c.no_decay_norm_bias and p.ndim <= 1)
        ortho = head is not None and p.ndim >= 2 and not name.startswith(head)  # Muon: filters, hidden matrices
        groups.setdefault((float(lr), decay, ortho, epochs), []).append(p)
    if c.group_lr and all(lr == c.lr for lr, *_ in groups):
        raise CnnlabError(f"optim.group_lr {c.group_lr} matched no parameter name; see `cnnlab summary` for the names")
    if c.group_epochs and all(epochs is None for *_, epochs in groups):
        names = "see `cnnlab summary` for the names"
        raise CnnlabError(f"optim.group_epochs {c.group_epochs} matched no parameter name; {names}")
    # lr_scale: the group's rate as a multiple of optim.lr, so the epoch line can show optim.lr itself
    scale = (lambda lr: lr / c.lr) if c.lr else (lambda lr: 1.0)
    out = []
    for (lr, decay, ortho, epochs), ps in groups.items():
        g = {"params": ps, "lr": lr, "lr_scale": scale(lr), "decay": decay}
        if head is not None:
            g["orthogonal"] = ortho
        if epochs is not None:
            g["train_epochs"] = epochs  # the schedule decays it to 0 over these epochs, then freezes it
        out.append(g)
    return out


def _head_prefix(model: nn.Module) -> str:
    """``"<head>."`` for the classifier layer Muon leaves to SGD (``"\0"``, matching nothing, if there is none)."""
    from cnnlab.models._common import find_head

    try:
        return find_head(model) + "."
    except CnnlabError:
        return "\0"


def describe_group_lrs(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> str | None:
    """One line naming the parameter groups that train at a multiple of ``optim.lr`` (None if none do).

    ``names`` maps ``id(parameter)`` to its name in the model."""
    scaled: dict[tuple[float, float], list[str]] = {}
    for g in optimizer.param_groups:
        epochs = g.get("train_epochs") or 0.0
        if g.get("lr_scale", 1.0) != 1.0 or epochs:
            scaled.setdefault((g.get("lr_scale", 1.0), epochs), []).extend(names.get(id(p), "?") for p in g["params"])
    if not scaled:
        return None
    parts = [
        f"{_list(ns)} x{k:.3g}" + (f" (falling to 0 over the first {e:g} epochs, then frozen)" if e else "")
        for (k, e), ns in sorted(scaled.items(), reverse=True)
    ]
    return (
        f"learning rates: the epoch lines show optim.lr under the schedule; these parameters train at a fixed "
        f"multiple of it: {'; '.join(parts)}"
    )


def _list(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _add_l2_to_grad(opt, args, kwargs) -> None:
    # L2 form for optimisers whose own decay is decoupled: g += wd * w, before the optimiser sees g.
    for g in opt.param_groups:
        wd = g.get("l2_wd", 0.0)
        if wd:
            for p in g["params"]:
                if p.grad is not None:
                    p.grad.add_(p.detach(), alpha=wd)


def _decoupled_decay(opt, args, kwargs) -> None:
    # Decoupled form for L2-style optimisers: w *= 1 - lr * wd, independent of the gradient scaling.
    with torch.no_grad():
        for g in opt.param_groups:
            wd = g.get("decoupled_wd", 0.0)
            if wd:
                for p in g["params"]:
                    if p.grad is not None:
                        p.mul_(1 - g["lr"] * wd)


def build_optimizer(model_or_params, c: OptimConfig) -> torch.optim.Optimizer:
    """Build ``c.name`` over a model's parameter groups (or a plain parameter iterable)."""
    builder = OPTIMIZERS.get(c.name)
    c = _with_lr(c)
    _check_lr(c.lr)
    if isinstance(model_or_params, nn.Module):
        groups = param_groups(model_or_params, c)
    else:  # a plain iterable: no head to tell apart, so Muon orthogonalises every matrix
        ps = list(model_or_params)
        groups = [{"params": ps, "lr": c.lr, "lr_scale": 1.0, "decay": True}]
        if c.name == "muon":
            kinds = {True: [p for p in ps if p.ndim >= 2], False: [p for p in ps if p.ndim < 2]}
            groups = [
                {"params": v, "lr": c.lr, "lr_scale": 1.0, "decay": True, "orthogonal": k}
                for k, v in kinds.items()
                if v
            ]
    native = "decoupled" if c.name in DECOUPLED_BY_DEFAULT else "l2"
    mode = native if c.weight_decay_mode == "auto" else c.weight_decay_mode
    if mode not in ("l2", "decoupled"):
        raise CnnlabError(f"optim.weight_decay_mode must be auto, l2 or decoupled, not {c.weight_decay_mode!r}")
    for g in groups:
        wd = c.weight_decay if g.pop("decay") else 0.0
        # The optimiser applies its own form itself; the other form goes through a step pre-hook.
        g["weight_decay"] = wd if mode == native else 0.0
        g["l2_wd" if native == "decoupled" else "decoupled_wd"] = wd if mode != native else 0.0
    opt = builder(groups, c, c.weight_decay)
    if mode != native and c.weight_decay:
        opt.register_step_pre_hook(_add_l2_to_grad if mode == "l2" else _decoupled_decay)
    if c.lookahead_k:
        opt = Lookahead(opt, k=c.lookahead_k, alpha=c.lookahead_alpha)
    return opt


def _with_lr(c: OptimConfig) -> OptimConfig:
    """``optim.lr`` null means 1e-3 (training under the fine-tune recipe fills it in before this)."""
    return dataclasses.replace(c, lr=DEFAULT_LR) if c.lr is None else c


def _check_lr(lr: float) -> None:
    if not math.isfinite(lr) or lr < 0:
        raise CnnlabError(f"optim.lr must be a finite number >= 0, got {lr}")
