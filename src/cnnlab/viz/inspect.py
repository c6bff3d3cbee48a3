"""Looking inside a trained CNN: first-layer filters, feature maps of one image at every conv layer,
Grad-CAM and saliency maps, a prediction grid, and 1-D/2-D slices of the loss landscape.

* Saliency (Simonyan et al. 2014): |d score_c / d x|, the largest over colour channels — which
  pixels would change the class score most.
* Grad-CAM (Selvaraju et al. 2017): weight each channel k of a conv layer's output A_k by the mean
  gradient alpha_k = mean_ij d y_c / d A_k, then ReLU(sum_k alpha_k A_k), upsampled to the image.
  With global average pooling and one linear layer on top it reduces to CAM (Zhou et al. 2016),
  which the tests use as the oracle.
* Loss landscape (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"): evaluate the
  loss at theta + a d1 (+ b d2) for random Gaussian directions d, each filter of d rescaled to the
  norm of the matching filter of theta ("filter normalisation") so that the picture does not depend
  on the scale of the weights; biases and normalisation parameters are not moved.

Every ``plot_*`` writes a PNG and a JSON of the plotted numbers beside it (see :mod:`cnnlab.viz.plots`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.viz.plots import _finish, plot_image_grid, plt


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """All ``nn.Conv2d`` modules in forward-definition order, with their qualified names."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not layers:
        raise CnnlabError(f"{type(model).__name__} has no Conv2d layer to show")
    return layers


def first_layer_filters(model: nn.Module) -> np.ndarray:
    """Weights of the first conv layer, (out_channels, in_channels, kh, kw)."""
    return conv_layers(model)[0][1].weight.detach().float().cpu().numpy()


def plot_filters(weights: np.ndarray, path: str | Path | None = None, max_filters: int = 64, title: str = ""):
    """One panel per filter. Three input channels are shown as an RGB image, one as grey; otherwise
    the mean over input channels is shown. Each filter is scaled to [0, 1] on its own (min-max)."""
    w = np.asarray(weights, dtype=np.float64)[:max_filters]  # (O, I, kh, kw)
    shown = w.transpose(0, 2, 3, 1) if w.shape[1] == 3 else w.mean(1)[..., None]  # (O, kh, kw, 1|3)
    lo = shown.min(axis=(1, 2, 3), keepdims=True)
    hi = shown.max(axis=(1, 2, 3), keepdims=True)
    scaled = (shown - lo) / np.maximum(hi - lo, 1e-12)
    n = len(w)
    cols = min(8, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows + 0.5), squeeze=False)
    for ax in axes.flat[n:]:
        ax.remove()
    for i, ax in enumerate(axes.flat[:n]):
        img = scaled[i]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(str(i), fontsize=7)
    mode = "rgb" if w.shape[1] == 3 else ("grey" if w.shape[1] == 1 else "mean over input channels")
    fig.suptitle(title or f"first-layer filters {tuple(weights.shape)} ({mode})", fontsize=9)
    fig.tight_layout()
    data = {"shape": list(np.shape(weights)), "panels": n, "mode": mode, "min": lo.ravel(), "max": hi.ravel()}
    return _finish(fig, path, data)


def feature_maps(model: nn.Module, x: torch.Tensor) -> list[tuple[str, np.ndarray]]:
    """The output of every conv layer for one input ``x`` (1, C, H, W): [(name, (C_l, H_l, W_l))]."""
    found: list[tuple[str, np.ndarray]] = []
    hooks = [
        m.register_forward_hook(
            lambda _m, _i, out, name=name: found.append((name, out[0].detach().float().cpu().numpy()))
        )
        for name, m in conv_layers(model)
    ]
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return found


def plot_feature_maps(
    image: np.ndarray, maps: list[tuple[str, np.ndarray]], path: str | Path | None = None, max_channels: int = 8
):
    """Input image on top, then one row per conv layer showing its ``max_channels`` most active
    channels (largest mean |activation|), each scaled to its own range."""
    cols = max(min(max_channels, max(m.shape[0] for _, m in maps)), 1)
    fig, axes = plt.subplots(len(maps) + 1, cols, figsize=(1.3 * cols + 1, 1.3 * (len(maps) + 1)), squeeze=False)
    _show(axes[0, 0], image, "input")
    for ax in axes[0, 1:]:
        ax.remove()
    layers = []
    for r, (name, m) in enumerate(maps, start=1):
        strength = np.abs(m).mean((1, 2))
        pick = np.argsort(-strength, kind="stable")[:cols]
        for c, ax in enumerate(axes[r]):
            if c >= len(pick):
                ax.remove()
                continue
            ax.imshow(m[pick[c]], cmap="viridis", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"ch {pick[c]}", fontsize=6)
        axes[r, 0].set_ylabel(f"{name}\n{m.shape[0]}×{m.shape[1]}×{m.shape[2]}", fontsize=7)
        layers.append({"name": name, "shape": list(m.shape), "channels": pick.tolist(), "mean_abs": strength[pick]})
    fig.tight_layout()
    panels = 1 + sum(len(lay["channels"]) for lay in layers)
    return _finish(fig, path, {"layers": layers, "panels": panels})


def _show(ax, image: np.ndarray, title: str) -> None:
    image = np.clip(image, 0, 1)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def _target(logits: torch.Tensor, target: int | None) -> int:
    return int(logits.argmax(1)[0]) if target is None else int(target)


def saliency(model: nn.Module, x: torch.Tensor, target: int | None = None) -> tuple[np.ndarray, int]:
    """Vanilla gradient saliency for one input (1, C, H, W): (H, W) max_c |d y_target / d x|, and the
    class used (the predicted one when ``target`` is None)."""
    model.eval()
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    t = _target(logits, target)
    (grad,) = torch.autograd.grad(logits[0, t], x)
    return grad[0].abs().amax(0).cpu().numpy(), t


def grad_cam(
    model: nn.Module, x: torch.Tensor, target: int | None = None, layer: nn.Module | str | None = None
) -> tuple[np.ndarray, int]:
    """Grad-CAM heat map of one input (1, C, H, W) at ``layer`` (default: the last conv layer).

    Returns ((H, W) map in [0, 1] upsampled bilinearly to the input size, the class explained).
    """
    layers = dict(conv_layers(model))
    if layer is None:
        layer = list(layers.values())[-1]
    elif isinstance(layer, str):
        if layer not in dict(model.named_modules()):
            raise CnnlabError(f"no layer named {layer!r}; conv layers are {list(layers)}")
        layer = dict(model.named_modules())[layer]
    saved: dict[str, torch.Tensor] = {}

    def hook(_m, _i, out):
        saved["act"] = out
        return out.clone()  # later in-place ops (ReLU(inplace=True)) must not overwrite what we differentiate

    handle = layer.register_forward_hook(hook)
    model.eval()
    try:
        logits = model(x.detach())
    finally:
        handle.remove()
    t = _target(logits, target)
    act = saved["act"]  # (1, K, h, w)
    (grad,) = torch.autograd.grad(logits[0, t], act)
    alpha = grad.mean((2, 3), keepdim=True)  # (1, K, 1, 1): channel importance
    cam = F.relu((alpha * act).sum(1, keepdim=True))  # (1, 1, h, w)
    cam = F.interpolate(cam.detach(), size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam / cam.max() if float(cam.max()) > 0 else cam
    return cam.detach().cpu().numpy(), t


def zero_cam_warning(explained: str, layer: str | None) -> str:
    """Why a Grad-CAM overlay is blank, and what to try instead."""
    where = f"layer {layer}" if layer else "the last conv layer"
    return (
        f"the Grad-CAM map for class {explained!r} is all zero: at {where} no location has positive evidence "
        "for it (the ReLU of sum_k alpha_k A_k is 0 everywhere), so the overlay is blank. Try an earlier layer "
        "(--layer), another class (--target), or the saliency picture"
    )


def plot_heatmap(image: np.ndarray, heat: np.ndarray, path: str | Path | None = None, title: str = "", info=None):
    """Two panels: the image, and the heat map (scaled to [0, 1]) laid over it."""
    heat = np.asarray(heat, dtype=np.float64)
    scaled = heat / heat.max() if heat.max() > 0 else heat
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(6.4, 3.4))
    _show(a1, image, "image")
    _show(a2, image, title)
    a2.imshow(scaled, cmap="jet", alpha=0.5, vmin=0, vmax=1)
    fig.tight_layout()
    peak = np.unravel_index(int(np.argmax(scaled)), scaled.shape)
    data = {"title": title, "panels": 2, "shape": list(scaled.shape), "peak": [int(v) for v in peak]}
    return _finish(fig, path, {**data, **(info or {}), "map": np.round(scaled, 4)})


def prediction_grid_rows(rows: list[dict[str, Any]], n: int = 32, seed: int = 0) -> list[dict[str, Any]]:
    """A seeded random sample of ``n`` prediction rows (in index order), mixing right and wrong."""
    pick = np.sort(np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False))
    return [rows[i] for i in pick]


# ---------------------------------------------------------------- loss landscape (Li et al. 2018)


def filter_normalized_direction(model: nn.Module, generator: torch.Generator) -> list[torch.Tensor]:
    """A random direction in weight space, one tensor per parameter: Gaussian, each filter (slice
    along dim 0 of a weight with >= 2 dims) rescaled to the norm of the same filter in the model;
    1-D parameters (biases, norm scales) get zeros."""
    out = []
    for p in model.parameters():
        w = p.detach()
        d = torch.randn(w.shape, generator=generator, dtype=torch.float32).to(w.device, w.dtype)
        if w.dim() <= 1:
            out.append(torch.zeros_like(w))
            continue
        wf, df = w.reshape(w.shape[0], -1), d.reshape(w.shape[0], -1)  # (filters, rest)
        df.mul_(wf.norm(dim=1, keepdim=True) / (df.norm(dim=1, keepdim=True) + 1e-10))
        out.append(d)
    return out


def _batches(loader: Iterable, max_samples: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    kept, seen = [], 0
    for x, y in loader:
        take = min(len(y), max_samples - seen)
        kept.append((x[:take], y[:take]))
        seen += take
        if seen >= max_samples:
            break
    return kept


@torch.no_grad()
def _loss_acc(model: nn.Module, batches) -> tuple[float, float]:
    loss, correct, n = 0.0, 0, 0
    for x, y in batches:
        logits = model(x)
        loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
    return loss / n, correct / n


def loss_landscape(
    model: nn.Module,
    loader: Iterable,
    dims: int = 1,
    steps: int = 21,
    span: float = 1.0,
    max_samples: int = 1000,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Loss and accuracy on a 1-D line or 2-D plane through the trained weights.

    Args:
        dims: 1 (theta + a d1) or 2 (theta + a d1 + b d2).
        steps: points per axis, on [-span, span] (odd keeps the trained point on the grid).
        max_samples: evaluate on the first this-many samples of ``loader`` (eval mode, BN frozen).

    Returns:
        {"alphas", ("betas"), "loss", "accuracy" ((steps,) or (steps, steps), rows = beta), "center_loss"}.
        The model's weights are restored afterwards, also on error.
    """
    if dims not in (1, 2):
        raise CnnlabError(f"loss landscape dims must be 1 or 2, not {dims}")
    model.eval()
    batches = _batches(loader, max_samples)
    gen = torch.Generator().manual_seed(seed)
    dirs = [filter_normalized_direction(model, gen) for _ in range(dims)]
    params = list(model.parameters())
    origin = [p.detach().clone() for p in params]
    axis = np.linspace(-span, span, steps)
    grid = [(0, a, 0.0) for a in axis] if dims == 1 else [(i, a, b) for i, b in enumerate(axis) for a in axis]
    losses, accs = np.zeros(len(grid)), np.zeros(len(grid))
    try:
        with torch.no_grad():
            for k, (_, a, b) in enumerate(grid):
                for j, p in enumerate(params):
                    step = a * dirs[0][j] + (b * dirs[1][j] if dims == 2 else 0)
                    p.copy_(origin[j] + step)
                losses[k], accs[k] = _loss_acc(model, batches)
            if log:
                log(f"landscape: {len(grid)} points on {sum(len(y) for _, y in batches)} samples")
    finally:
        with torch.no_grad():
            for p, o in zip(params, origin):
                p.copy_(o)
    shape = (steps,) if dims == 1 else (steps, steps)
    out = {"dims": dims, "span": span, "alphas": axis, "loss": losses.reshape(shape), "accuracy": accs.reshape(shape)}
    if dims == 2:
        out["betas"] = axis
    out["center_loss"] = _loss_acc(model, batches)[0]
    return out


def plot_landscape_1d(res: dict[str, Any], path: str | Path | None = None):
    """Loss and accuracy along one filter-normalised direction (two panels)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    a1.plot(res["alphas"], res["loss"], marker="o", ms=3)
    a1.set(xlabel="α (step along d₁)", ylabel="loss", title="loss along a random direction")
    a2.plot(res["alphas"], res["accuracy"], marker="o", ms=3, color="#55a868")
    a2.set(xlabel="α", ylabel="accuracy", ylim=(0, 1.02), title="accuracy")
    for ax in (a1, a2):
        ax.axvline(0, color="gray", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    keys = ("dims", "span", "alphas", "loss", "accuracy", "center_loss")
    return _finish(fig, path, {"panels": 2, **{k: res[k] for k in keys}})


def plot_landscape_2d(res: dict[str, Any], path: str | Path | None = None):
    """Contour plot of the loss on the plane of two filter-normalised directions (log-spaced levels)."""
    a, b, z = res["alphas"], res["betas"], np.asarray(res["loss"])
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    levels = np.geomspace(max(z.min(), 1e-6), z.max(), 15) if z.max() > z.min() else 5
    cs = ax.contour(a, b, z, levels=levels, cmap="viridis")
    ax.clabel(cs, fontsize=6, fmt="%.2f")
    fig.colorbar(cs, ax=ax, fraction=0.046, label="loss")
    ax.plot([0], [0], marker="*", color="red", ms=10)
    ax.set(xlabel="α (d₁)", ylabel="β (d₂)", title="loss landscape, filter-normalised (Li et al. 2018)")
    fig.tight_layout()
    keys = ("dims", "span", "alphas", "betas", "loss", "accuracy", "center_loss")
    return _finish(fig, path, {"panels": 1, **{k: res[k] for k in keys}})


# ---------------------------------------------------------------- one call per picture, on a run folder


def _check_index(rp, index: int) -> int:
    n = len(rp.targets)
    if not 0 <= index < n:
        raise CnnlabError(f"--index {index} is outside the {rp.split} split (0..{n - 1})")
    return index


def _title(rp, index: int, target: int) -> dict[str, Any]:
    pred = int(rp.logits[index].argmax())
    return {
        "index": index,
        "id": rp.ids[index],
        "true": rp.classes[int(rp.targets[index])],
        "pred": rp.classes[pred],
        "explained": rp.classes[target],
        "confidence": float(rp.probs[index, pred]),
    }


def _vis_filters(rp, out: Path, index: int, **_) -> list[Path]:
    plot_filters(first_layer_filters(rp.model), out / "filters.png")
    return [out / "filters.png"]


def _vis_feature_maps(rp, out: Path, index: int, **_) -> list[Path]:
    maps = feature_maps(rp.model, rp.inputs([_check_index(rp, index)]))
    path = out / f"feature_maps_{index}.png"
    plot_feature_maps(rp.images([index])[0], maps, path)
    return [path]


def _vis_attribution(method: str):
    def run(rp, out: Path, index: int, target: int | None = None, layer: str | None = None, **_) -> list[Path]:
        x = rp.inputs([_check_index(rp, index)])
        if method == "gradcam":
            heat, t = grad_cam(rp.model, x, target, layer)
        else:
            heat, t = saliency(rp.model, x, target)
        info = _title(rp, index, t)
        title = f"{method}: {info['explained']} (true {info['true']}, pred {info['pred']} {info['confidence']:.2f})"
        if method == "gradcam" and not np.any(heat > 0):
            info["warning"] = zero_cam_warning(info["explained"], layer)
            title += "\nmap all zero: see the warning"
            print(f"cnnlab: warning: {info['warning']}", file=sys.stderr)
        path = out / f"{method}_{index}.png"
        plot_heatmap(rp.images([index])[0], heat, path, title, info)
        return [path]

    return run


def _vis_predictions(rp, out: Path, index: int, n: int = 32, seed: int = 0, **_) -> list[Path]:
    rows = prediction_grid_rows(rp.rows(), n, seed)
    wrong = sum(not r["correct"] for r in rows)
    title = f"{len(rows)} random {rp.split} images: {len(rows) - wrong} right (green), {wrong} wrong (red)"
    plot_image_grid(rp.images([r["index"] for r in rows]), rows, out / "predictions.png", title)
    return [out / "predictions.png"]


def _vis_landscape(
    rp, out: Path, index: int, steps: int = 21, span: float = 1.0, samples: int = 500, seed: int = 0, **_
):
    idx = np.arange(min(samples, len(rp.targets)))
    device = next(rp.model.parameters()).device
    y = torch.from_numpy(rp.targets[idx]).to(device)
    step = int(np.clip(2**24 // int(np.prod(rp.meta["input_shape"])), 1, 500))  # batches of <= 64 MB float32
    batches = [(rp.inputs(idx[i : i + step]), y[i : i + step]) for i in range(0, len(idx), step)]
    steps_2d = max(3, (steps // 2) | 1)  # odd, so the trained weights sit on the grid; ~4x fewer points
    one = loss_landscape(rp.model, batches, dims=1, steps=steps, span=span, max_samples=len(idx), seed=seed)
    two = loss_landscape(rp.model, batches, dims=2, steps=steps_2d, span=span, max_samples=len(idx), seed=seed)
    plot_landscape_1d(one, out / "landscape_1d.png")
    plot_landscape_2d(two, out / "landscape_2d.png")
    return [out / "landscape_1d.png", out / "landscape_2d.png"]


VISUALS: dict[str, Callable[..., list[Path]]] = {
    "filters": _vis_filters,
    "feature-maps": _vis_feature_maps,
    "gradcam": _vis_attribution("gradcam"),
    "saliency": _vis_attribution("saliency"),
    "predictions": _vis_predictions,
    "landscape": _vis_landscape,
}


def visualize(
    run: str | Path, kind: str, index: int = 0, out: str | Path | None = None, device: str = "cpu", **options: Any
) -> list[Path]:
    """Draw one kind of picture for a run folder and return the PNG paths (a JSON lies beside each).

    Args:
        kind: one of ``VISUALS``: filters, feature-maps, gradcam, saliency, predictions, landscape.
        index: the test image (position in the run's test split) for feature-maps, gradcam, saliency.
        out: folder for the files (default ``RUN/plots``; ``runs/demo-NAME/plots`` for a built-in run).
        **options: target / layer (gradcam, saliency), n / seed (predictions), steps / span / samples (landscape).
    """
    from cnnlab.errors import did_you_mean
    from cnnlab.evaluation.interpret import run_predictions

    if kind not in VISUALS:
        raise CnnlabError(f"unknown picture {kind!r};{did_you_mean(kind, VISUALS)} choose from {', '.join(VISUALS)}")
    rp = run_predictions(run, device=device)
    folder = Path(out) if out is not None else rp.out_dir / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    return VISUALS[kind](rp, folder, index, **{k: v for k, v in options.items() if v is not None})
