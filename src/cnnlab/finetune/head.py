"""The new head fitted on the frozen body's features before any layer trains (LP-FT).

Kumar et al. 2022 ("Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution")
show that fine-tuning a pretrained network from a random or zero head lets the head's early, large
gradients reshape the body's features before the head has learnt to use them; fitting the head first
as a linear probe on the frozen features (LP), then fine-tuning everything from that head (FT), keeps
the features and ends more accurate. Here the probe is the exact one, not a few SGD steps:

1. one pass over the training images in eval mode (the pretrained BatchNorm statistics, no
   augmentation, no random numbers drawn), capturing the input of the classifier layer: the pooled
   features, (N, F), for any torchvision, timm or zoo network;
2. a multinomial logistic regression on them, ``mean cross-entropy + l2 / 2 * ||W||^2``, solved to
   convergence by full-batch L-BFGS (convex, a few hundred milliseconds for thousands of images);
   ``l2 = HEAD_L2 * mean ||f||^2 / F`` (the mean squared feature), so the penalty means the same for any
   scale of the features (features ``s`` times larger give a ``1/s`` times smaller solution, the same logits);
3. the classifier's weight and bias set to the solution (auxiliary heads stay as they are).

The pass costs about a third of a training epoch (a forward without gradients); the fit is deterministic,
so a run repeats exactly and ``--resume`` restores the trained weights over it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from cnnlab.models._common import find_head

# the L2 strength in units of the mean squared feature: chosen on held-out CIFAR-10
# train photos (never the reported test photos) with EfficientNet-Lite0 at 96 px, where 0.003-0.03 gave
# the same probe accuracy within 2 points and a smaller penalty overfits a few hundred photos
HEAD_L2 = 0.01
MAX_ITER = 200  # L-BFGS iterations: a convex problem this size converges in tens


@torch.no_grad()
def pooled_features(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]):
    """(features (N, F), labels (N,)): the classifier layer's input for every image, the model in eval mode
    (its training mode restored after)."""
    head = model.get_submodule(find_head(model))
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().flatten(1).float()))
    was_training = model.training
    model.eval()
    labels = []
    try:
        for x, y in batches:
            model(x)
            labels.append(y)
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured), torch.cat(labels)


def fit_logistic(features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float):
    """(W (K, F), b (K,)) minimising mean cross-entropy + l2 / 2 * ||W||^2, by full-batch L-BFGS."""
    w = torch.zeros(num_classes, features.shape[1], device=features.device, requires_grad=True)
    b = torch.zeros(num_classes, device=features.device, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1, max_iter=MAX_ITER, history_size=20, line_search_fn="strong_wolfe",
        tolerance_grad=1e-6, tolerance_change=1e-9,
    )  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(features @ w.T + b, labels) + l2 / 2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def fit_head(model: nn.Module, batches: Iterable, log: Callable[[str], None] = print) -> dict:
    """Set the classifier of ``model`` to the logistic regression on its frozen features; returns
    ``{"images", "features", "l2", "train_acc", "train_loss"}``."""
    feats, labels = pooled_features(model, batches)
    head = model.get_submodule(find_head(model))
    labels = labels.to(feats.device)
    l2 = HEAD_L2 * float(feats.pow(2).mean())
    w, b = fit_logistic(feats, labels, head.out_features, l2)
    with torch.no_grad():
        head.weight.copy_(w.to(head.weight))
        if head.bias is not None:
            head.bias.copy_(b.to(head.bias))
        logits = feats @ w.T + (b if head.bias is not None else 0)
    result = {
        "images": len(labels),
        "features": feats.shape[1],
        "l2": l2,
        "train_acc": float((logits.argmax(1) == labels).float().mean()),
        "train_loss": float(nn.functional.cross_entropy(logits, labels)),
    }
    log(
        f"head fitted on the frozen features of {result['images']} training images ({result['features']} each): "
        f"logistic regression, L2 {l2:.2g}; training accuracy {result['train_acc']:.3f}, "
        f"loss {result['train_loss']:.3f}"
    )
    return result
