"""Shared helpers: building torchvision's ImageNet-shaped networks offline, finding the stem conv and the
classifier layer (used by fine-tuning and by Muon, which leaves the head to SGD).

The ImageNet-shaped variants in the zoo are torchvision's own builders called with ``weights=None``
(never a download); pretrained weights are loaded afterwards by ``cnnlab.finetune.transfer`` from a
local file or from torchvision's published files (``cnnlab.finetune.weights``).
``in_channels != 3`` swaps the stem convolution for one with the new input channel count, which is
the same surgery ``transfer.adapt_in_channels`` does when it also carries the weights over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from cnnlab.errors import CnnlabError

# Registered names whose builders call torchvision's (importing torchvision imports TorchDynamo: ~2 s of a
# 2-core machine). Their summaries at their own input are shipped (cnnlab.summary_table), so `cnnlab summary
# vgg16` need not pay that import; a test checks that every other model builds without torchvision.
TORCHVISION_BUILT: set[str] = set()


def find_head(model: nn.Module) -> str:
    """Qualified name of the classification layer: the last ``nn.Linear`` outside auxiliary heads."""
    name = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear) and not any(part.startswith("aux") for part in n.split(".")):
            name = n
    if name is None:
        raise CnnlabError(f"{type(model).__name__} has no nn.Linear classifier layer to replace or fine-tune.")
    return name


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """Qualified name and module of the first ``nn.Conv2d`` in registration order (the stem conv)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise CnnlabError(f"{type(model).__name__} has no Conv2d layer, so its input channels cannot be changed.")


def conv_like(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A fresh Conv2d with the hyper-parameters of ``conv`` but ``in_channels`` input channels."""
    if conv.groups != 1:
        raise CnnlabError("the first conv is grouped; changing its input channels is not supported.")
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )


def torchvision_model(arch: str, *, num_classes: int, in_channels: int, **kw: Any) -> nn.Module:
    """``torchvision.models.<arch>(weights=None, num_classes=...)`` with the stem adapted to ``in_channels``."""
    import torchvision.models as tvm

    model = getattr(tvm, arch)(weights=None, num_classes=num_classes, **kw)
    if in_channels != 3:
        name, conv = first_conv(model)
        new = conv_like(conv, in_channels)
        # keep torchvision's init scheme for the stem (kaiming normal, fan_out) on the new conv
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
        if new.bias is not None:
            nn.init.zeros_(new.bias)
        model.set_submodule(name, new)
    return model


def check_input_size(name: str, input_size: int, minimum: int) -> None:
    """Refuse inputs too small for a network's downsampling (a clear message instead of a shape error)."""
    if input_size < minimum:
        raise CnnlabError(f"{name} needs inputs of at least {minimum}x{minimum} pixels, got {input_size}.")


def register_variant(
    name: str,
    build: Callable[..., nn.Module],
    doc: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    torchvision: bool = False,
) -> None:
    """Register ``name`` as a keyword-only builder calling ``build(num_classes=, in_channels=, input_size=, **kw)``.

    Families keep their variants in a config table and call this once per row, so every variant is a
    real registered builder whose signature defaults say its natural input (used by ``cnnlab models``).
    ``torchvision=True`` says that ``build`` calls :func:`torchvision_model` (see :data:`TORCHVISION_BUILT`).
    """
    from cnnlab.models import register_model

    defaults = (num_classes, in_channels, input_size)

    def builder(
        *, num_classes: int = defaults[0], in_channels: int = defaults[1], input_size: int = defaults[2], **kw: Any
    ) -> nn.Module:
        return build(num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kw)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    register_model(builder)
    if torchvision:
        TORCHVISION_BUILT.add(name)


def register_torchvision(name: str, doc: str, arch: str | None = None, **fixed: Any) -> None:
    """Register torchvision's ``arch`` (default ``name``) as an ImageNet-shaped variant (1000 classes, 224 px)."""

    def build(*, num_classes: int, in_channels: int, input_size: int, **kw: Any) -> nn.Module:
        return torchvision_model(arch or name, num_classes=num_classes, in_channels=in_channels, **{**fixed, **kw})

    register_variant(name, build, doc, num_classes=1000, in_channels=3, input_size=224, torchvision=True)
