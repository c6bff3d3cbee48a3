"""Transfer learning: load local pretrained weights, reshape a network for a new task, choose what trains.

Seed 002 ("Transfer Learning", steps 1-4) recommends starting from a network pretrained on a large
dataset, replacing its classification layer with one for your classes, and then either training only
the new head (feature extraction), the top blocks plus the head, or everything with a small learning
rate, possibly unfreezing in phases (head, then the last residual stage, then all). This module does
each step on any model of the zoo or of torchvision:

- :func:`load_pretrained` reads a torchvision ``.pth`` state dict (``torch.load(weights_only=True)``,
  never a pickle of code), a ``.safetensors`` file or a cnnlab model folder (``weights.safetensors``
  + ``model.json``), and refuses a mismatch with a message listing missing, unexpected and
  shape-mismatched tensors. No network access is ever needed.
- :func:`replace_head` swaps the final linear layer (and GoogLeNet's auxiliary heads) for new ones.
- :func:`adapt_in_channels` changes the first conv's input channels, carrying the weights over with
  one rule: every new input channel gets ``sum over old channels of W / new_channels``. An image whose
  channels are all equal (a grey image copied into RGB, or a single grey channel) therefore gives
  exactly the same output before and after: 3 -> 1 sums the RGB filters, 1 -> 3 splits the grey
  filter into thirds.
- :func:`model_blocks` lists a model's blocks from input to head; the strategies
  (:func:`feature_extraction`, :func:`finetune_top`, :func:`finetune_all`,
  :func:`unfreeze_for_epoch`) set ``requires_grad`` block by block, and :func:`param_groups` gives
  discriminative learning rates (head ``base_lr``, each block below ``decay`` times the one above).

Build the optimiser once over all parameters (or over ``param_groups``): frozen parameters get no
gradient and every torch optimiser skips them, so unfreezing later needs no new optimiser.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models._common import conv_like, find_head, first_conv
from cnnlab.registry import Registry

_EXPAND = {"features", "layers", "blocks", "stages", "body"}  # containers whose children are the blocks
_WEIGHT_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

# ---------------------------------------------------------------- anatomy: head and blocks


def _aux_heads(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_children() if n.startswith("aux") and m is not None]


def _group_leaves(run: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    """Split a run of leaf layers into blocks, one weight layer (conv/linear) each with what follows it."""
    groups: list[list[tuple[str, nn.Module]]] = []
    for name, m in run:
        if not groups or (isinstance(m, _WEIGHT_LAYERS) and any(isinstance(x, _WEIGHT_LAYERS) for _, x in groups[-1])):
            groups.append([])
        groups[-1].append((name, m))
    out = []
    for g in groups:
        name = g[0][0] if len(g) == 1 else f"{g[0][0]}..{g[-1][0]}"
        out.append((name, g[0][1] if len(g) == 1 else nn.Sequential(*(m for _, m in g))))
    return out


def _merge_norm_only(blocks: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    """Fold blocks without conv/linear layers (a final BN-ReLU, DenseNet's norm5) into the block before."""
    out: list[tuple[str, nn.Module]] = []
    for name, m in blocks:
        if out and not any(isinstance(x, _WEIGHT_LAYERS) for x in m.modules()):
            prev_name, prev = out.pop()
            name, m = f"{prev_name}+{name}", nn.ModuleList([prev, m])
        out.append((name, m))
    return out


def model_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's blocks from input to output, the head last; blocks without parameters are left out.

    Blocks are the top-level children (ResNet stages ``layer1``..``layer4``, Inception modules, ...),
    the children of a ``features``-like container (VGG/MobileNet/EfficientNet/DenseNet stages), and
    runs of plain layers split at each conv/linear layer (``conv1..maxpool``); a block made only of
    normalisation (a final BN-ReLU) joins the block before it (``layer3+post``). The last entry is the
    head: the top-level child holding the classifier layer, grouped with any auxiliary heads.
    """
    head_top = find_head(model).split(".")[0]
    aux = _aux_heads(model)
    skip = {head_top} | {n for n, _ in aux}
    blocks: list[tuple[str, nn.Module]] = []
    run: list[tuple[str, nn.Module]] = []

    def add(name: str, module: nn.Module) -> None:
        if list(module.children()):
            blocks.extend(_group_leaves(run))
            run.clear()
            blocks.append((name, module))
        else:
            run.append((name, module))

    for name, child in model.named_children():
        if name in skip or child is None:
            continue
        if name in _EXPAND and list(child.children()):
            for sub, grandchild in child.named_children():
                add(f"{name}.{sub}", grandchild)
        else:
            add(name, child)
    blocks.extend(_group_leaves(run))
    blocks = _merge_norm_only([(n, m) for n, m in blocks if any(True for _ in m.parameters())])
    head = model if head_top == "" else model.get_submodule(head_top)
    if aux:
        blocks.append(("+".join([head_top, *(n for n, _ in aux)]), nn.ModuleList([head, *(m for _, m in aux)])))
    else:
        blocks.append((head_top, head))
    return blocks


# ---------------------------------------------------------------- freezing strategies


def _set_trainable(modules: list[nn.Module], model: nn.Module) -> None:
    model.requires_grad_(False)
    for m in modules:
        m.requires_grad_(True)


def finetune_top(model: nn.Module, n_blocks: int = 1) -> list[str]:
    """Train the head and the top ``n_blocks`` blocks below it; freeze everything else.

    Returns:
        Names of the trainable blocks, head last.
    """
    blocks = model_blocks(model)
    if n_blocks < 0:
        raise CnnlabError(f"n_blocks must be >= 0, got {n_blocks}.")
    chosen = blocks[-(n_blocks + 1) :]
    _set_trainable([m for _, m in chosen], model)
    return [n for n, _ in chosen]


def feature_extraction(model: nn.Module) -> list[str]:
    """Freeze everything but the head (seed 002, option A)."""
    return finetune_top(model, 0)


def finetune_all(model: nn.Module) -> list[str]:
    """Train every parameter (seed 002, option C; pair it with a small learning rate)."""
    model.requires_grad_(True)
    return [n for n, _ in model_blocks(model)]


def parse_schedule(text: str) -> dict[int, int | str]:
    """``"0:0,3:1,6:all"`` -> ``{0: 0, 3: 1, 6: "all"}`` (from epoch E on, train the top N blocks + head)."""
    schedule: dict[int, int | str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        epoch, _, n = part.partition(":")
        if not epoch.strip().isdigit() or not (n.strip() == "all" or n.strip().isdigit()):
            raise CnnlabError(f"bad unfreeze schedule entry {part!r}: expected EPOCH:BLOCKS like '0:0,3:1,6:all'.")
        schedule[int(epoch)] = "all" if n.strip() == "all" else int(n)
    if not schedule:
        raise CnnlabError("empty unfreeze schedule; expected EPOCH:BLOCKS pairs like '0:0,3:1,6:all'.")
    return schedule


DEFAULT_SCHEDULE: dict[int, int | str] = {0: 0, 3: 1, 6: "all"}  # seed 002: head, then last stage, then all


def unfreeze_for_epoch(
    model: nn.Module, epoch: int, schedule: Mapping[int, int | str] | str = DEFAULT_SCHEDULE
) -> list[str]:
    """Progressive unfreezing: apply the latest schedule entry whose start epoch is <= ``epoch``.

    ``schedule`` maps a start epoch (0-based) to how many blocks below the head train from then on
    (``0`` = head only, ``"all"`` = everything). Call it at the start of every epoch.
    """
    schedule = parse_schedule(schedule) if isinstance(schedule, str) else dict(schedule)
    started = [e for e in schedule if e <= epoch]
    n = schedule[max(started)] if started else 0
    return finetune_all(model) if n == "all" else finetune_top(model, int(n))


def param_groups(
    model: nn.Module, base_lr: float, decay: float = 0.5, body_share: float | None = None
) -> list[dict[str, Any]]:
    """Discriminative learning rates: the head gets ``base_lr``, the block below ``base_lr * body_share``
    (default ``decay``), each further block ``decay`` times the one above it.

    Every parameter appears in exactly one group (parameters outside any block join the lowest
    group), so ``torch.optim.AdamW(param_groups(model, 1e-3))`` covers the whole model.
    """
    body_share = decay if body_share is None else body_share
    if not 0 < decay <= 1 or not 0 < body_share <= 1:
        raise CnnlabError(f"decay and body_share must be in (0, 1], got {decay} and {body_share}.")
    seen: set[int] = set()
    groups = []
    for depth, (name, module) in enumerate(reversed(model_blocks(model))):
        params = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            lr = base_lr if depth == 0 else base_lr * body_share * decay ** (depth - 1)
            groups.append({"params": params, "lr": lr, "name": name})
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:
        groups[-1]["params"].extend(rest)
    return groups


def lr_by_parameter(
    model: nn.Module, base_lr: float, decay: float = 0.5, body_share: float | None = None
) -> dict[str, float]:
    """The learning rate :func:`param_groups` gives each parameter, keyed by its qualified name.

    Block names (``conv1..maxpool``, ``layer4+post``) are labels, not name prefixes; use this mapping
    when a config needs per-parameter-name learning rates.
    """
    lr_of = {id(p): g["lr"] for g in param_groups(model, base_lr, decay, body_share) for p in g["params"]}
    return {name: lr_of[id(p)] for name, p in model.named_parameters()}


@torch.no_grad()
def zero_head(model: nn.Module) -> None:
    """Zero the classifier layer (and auxiliary heads' last linear layers): a new head that starts at
    chance, loss ln(classes) whatever the features' scale, so its first steps and the LR finder see
    the pretrained features rather than a random projection of them (timm's EfficientNet heads start
    with weights up to 1/sqrt(classes), logits in the tens on ImageNet features)."""
    names = [find_head(model)]
    for aux_name, aux in _aux_heads(model):
        names += [f"{aux_name}.{n}" for n, m in aux.named_modules() if isinstance(m, nn.Linear)][-1:]
    for name in names:
        layer = model.get_submodule(name)
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()


def set_frozen_bn_eval(model: nn.Module) -> int:
    """Put batch-norm layers whose parameters are all frozen into eval mode (keeps their running stats).

    ``model.train()`` switches them back, so call this after it, at the start of each epoch.
    Returns the number of layers switched.
    """
    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()
            n += 1
    return n


STRATEGIES: Registry = Registry("fine-tuning strategy")
STRATEGIES.register("feature_extraction")(lambda model, **kw: feature_extraction(model))
STRATEGIES.register("finetune_top")(lambda model, n_blocks=1, **kw: finetune_top(model, n_blocks))
STRATEGIES.register("finetune_all")(lambda model, **kw: finetune_all(model))
STRATEGIES.register("progressive")(
    lambda model, epoch=0, schedule=DEFAULT_SCHEDULE, **kw: unfreeze_for_epoch(model, epoch, schedule)
)


def apply_strategy(model: nn.Module, name: str, **kw: Any) -> list[str]:
    """``apply_strategy(model, "finetune_top", n_blocks=2)``; names are those of ``STRATEGIES``."""
    return STRATEGIES.get(name)(model, **kw)


# ---------------------------------------------------------------- surgery: head and input channels


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace the classifier layer (and auxiliary heads' last linear layers) with fresh ones for ``num_classes``."""
    if num_classes < 1:
        raise CnnlabError(f"num_classes must be positive, got {num_classes}.")
    names = [find_head(model)]
    for aux_name, aux in _aux_heads(model):
        linears = [n for n, m in aux.named_modules() if isinstance(m, nn.Linear)]
        if linears:
            names.append(f"{aux_name}.{linears[-1]}")
    for name in names:
        old = model.get_submodule(name)
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        model.set_submodule(name, new.to(device=old.weight.device, dtype=old.weight.dtype))
    if hasattr(model, "num_classes"):
        model.num_classes = num_classes
    return model


def adapt_conv_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """(O, C, kh, kw) -> (O, in_channels, kh, kw): each new channel is ``sum_c W[:, c] / in_channels``."""
    return weight.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels


@torch.no_grad()
def adapt_in_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """Change the first conv to take ``in_channels`` inputs, keeping what it computes on grey images."""
    name, conv = first_conv(model)
    if conv.in_channels == in_channels:
        return model
    new = conv_like(conv, in_channels)
    new.weight.copy_(adapt_conv_weight(conv.weight, in_channels))
    if conv.bias is not None:
        new.bias.copy_(conv.bias)
    model.set_submodule(name, new)
    return model


# ---------------------------------------------------------------- loading weights


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or a checkpoint holding one under model/state_dict/model_state."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                return _unwrap(obj[key], path)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    raise CnnlabError(f"{path} holds no state dict (a mapping of tensor names to tensors).")


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.pth``/``.pt`` state dict, a ``.safetensors`` file or a cnnlab model/run folder."""
    p = Path(path)
    for folder in (p / "model", p):
        if p.is_dir() and (folder / "weights.safetensors").is_file():
            p = folder / "weights.safetensors"
            break
    if not p.is_file():
        raise CnnlabError(
            f"pretrained weights {str(path)!r} not found: give a .pth/.pt state dict, a .safetensors file "
            "or a cnnlab model folder (weights.safetensors + model.json)."
        )
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable or a pickle with code in it: both are the user's file to fix
        raise CnnlabError(f"cannot read weights from {p}: {exc}") from None
    state = _unwrap(state, p)
    prefixes = ("module.", "_orig_mod.")  # DistributedDataParallel and torch.compile wrappers
    state = {k.removeprefix(prefixes[0]).removeprefix(prefixes[1]): v for k, v in state.items()}
    # torchvision's DenseNet files use the pre-0.4 names "norm.1" for "norm1" (its own loader renames them)
    return {_OLD_DENSENET.sub(r"\1\2", k): v for k, v in state.items()}


_OLD_DENSENET = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.[a-z_]+)$")


def _listing(title: str, items: list[str], limit: int = 8) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"\n  {title} ({len(items)}): {', '.join(items[:limit])}{more}"


def load_pretrained(
    model: nn.Module,
    path: str | Path,
    *,
    exclude_head: bool = False,
    adapt_channels: bool = True,
    hint: str | None = None,
) -> dict[str, Any]:
    """Load weights from a local file into ``model``; refuse any mismatch with a list of what differs.

    Args:
        exclude_head: leave the classifier (and auxiliary heads) as they are, for a new class count.
        adapt_channels: if only the first conv's input channels differ (RGB weights, grey model or
            back), convert them with :func:`adapt_conv_weight` instead of failing.
        hint: the advice that ends a mismatch error (default: what to do from Python).

    Returns:
        ``{"loaded": n_tensors, "excluded": [...], "adapted": [...]}``; ``excluded`` lists the head
        tensors left alone and any auxiliary-head tensors of a model built without auxiliary heads.
    """
    state = load_state(path)
    own = model.state_dict()
    excluded: list[str] = []
    if exclude_head:
        heads = [find_head(model)] + [n for n, _ in _aux_heads(model)]
        excluded = [k for k in {*own, *state} if any(k == h or k.startswith(h + ".") for h in heads)]
        for k in excluded:
            own.pop(k, None)
            state.pop(k, None)
    if not _aux_heads(model):
        # auxiliary heads (GoogLeNet) exist only for training; a model built without them ignores theirs
        aux = [k for k in state if k.startswith("aux")]
        excluded += aux
        for k in aux:
            state.pop(k)
    adapted = []
    stem = first_conv(model)[0] + ".weight"
    w = state.get(stem)
    if adapt_channels and w is not None and stem in own and w.dim() == 4 and w.shape[1] != own[stem].shape[1]:
        state[stem] = adapt_conv_weight(w, own[stem].shape[1])
        adapted.append(stem)
    # torchvision's older weight files predate BatchNorm's num_batches_tracked counter; it is a step
    # count, not a learned value, so a file without it is complete
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    mismatched = [
        f"{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(own)
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        msg = f"weights in {path} do not match {type(model).__name__}:"
        msg += _listing("missing from the file", missing) if missing else ""
        msg += _listing("unexpected in the file", unexpected) if unexpected else ""
        msg += _listing("shape mismatch", mismatched) if mismatched else ""
        msg += "\n" + (
            hint
            or "Check the architecture name; if only the classifier differs (another class count), "
            "load with exclude_head=True and call replace_head."
        )
        raise CnnlabError(msg)
    model.load_state_dict(state, strict=False)
    return {"loaded": len(state), "excluded": sorted(excluded), "adapted": adapted}
