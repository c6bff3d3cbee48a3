"""timm backbones as ``timm:NAME`` models (optional extra: ``pip install 'cnnlab[timm]'``).

timm ("PyTorch Image Models") holds hundreds of ImageNet CNNs (ConvNeXt, EfficientNet/V2, RegNet,
ResNet-D, MobileNetV3, ...). ``create_model("timm:convnext_nano", num_classes=4, in_channels=1)``
calls ``timm.create_model(name, pretrained=False, num_classes=, in_chans=)``: never a download.
timm's CNNs end in adaptive pooling, so ``input_size`` only sets the default shown by
``cnnlab models``. The model file records ``timm:NAME`` as its architecture, so loading it, predict,
serve and export rebuild it here.

Named weights (``--pretrained imagenet``, ``--weights TAG``) come from the Hugging Face cache only
(``huggingface_hub.try_to_load_from_cache``; no network): ``timm.create_model(NAME, pretrained=True)``
run once on a machine with internet fills that cache. Their preprocessing is timm's pretrained config
(input size, ``crop_pct``, mean/std, interpolation).

Only the modules listed in :data:`CNN_MODULES` are listed (timm also holds transformers and MLPs);
any timm name still builds.
"""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.models.pretrained import Preprocessing, PretrainedWeights

PREFIX = "timm:"
# timm modules whose models are convolutional networks (timm.list_modules() has transformers and MLPs too)
CNN_MODULES = (
    "byobnet", "convmixer", "convnext", "cspnet", "densenet", "dla", "dpn", "efficientnet", "fasternet",
    "ghostnet", "hardcorenas", "hgnet", "hrnet", "inception_resnet_v2", "inception_v3", "inception_v4",
    "lcnetv2", "mobilenetv3", "nasnet", "nfnet", "pnasnet", "rdnet", "regnet", "repghost", "res2net",
    "resnest", "resnet", "resnetv2", "rexnet", "selecsls", "senet", "sknet", "starnet", "tresnet", "vgg",
    "vovnet", "xception", "xception_aligned",
)  # fmt: skip


def _timm():
    try:
        import timm
    except ImportError:
        raise CnnlabError(
            "timm:NAME models need the timm package: pip install 'cnnlab[timm]' (or pip install timm)."
        ) from None
    return timm


def _check_name(timm, name: str) -> None:
    if not timm.is_model(name):
        raise CnnlabError(
            f"timm has no model {name!r}.{did_you_mean(name, timm.list_models())} "
            "List them with: cnnlab models 'timm:*'."
        )


def create_timm(
    name: str, *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, **kw: Any
) -> nn.Module:
    """``timm.create_model(name)`` (random weights) for ``num_classes`` classes and ``in_channels`` channels."""
    timm = _timm()
    _check_name(timm, name)
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kw)


def list_timm(pattern: str = "*") -> list[str]:
    """timm CNN names matching ``pattern`` (a glob, without the ``timm:`` prefix), prefixed with ``timm:``."""
    timm = _timm()
    names = timm.list_models(module=[m for m in CNN_MODULES if m in timm.list_modules()])
    return [PREFIX + n for n in names if fnmatch.fnmatch(n, pattern)]


def timm_input_size(name: str) -> int:
    """The square side timm's default pretrained config trains ``name`` at (224 when it has none)."""
    try:
        cfg = _timm().models.get_pretrained_cfg(name)
    except RuntimeError:
        return 224
    return int(cfg.input_size[-1]) if cfg is not None else 224


def timm_pretrained(name: str, tag: str | None = None) -> PretrainedWeights:
    """Named timm weights from the Hugging Face cache, with their preprocessing (never a download)."""
    timm = _timm()
    if tag and "." in name:
        raise CnnlabError(f"timm:{name} already names its weights tag; drop --weights {tag} (or the tag in the name).")
    full = f"{name}.{tag}" if tag else name
    _check_name(timm, name.split(".")[0])
    try:
        cfg = timm.models.get_pretrained_cfg(full)
    except RuntimeError:
        cfg = None
    if cfg is None or not cfg.hf_hub_id:
        tags = timm.list_pretrained(f"{name.split('.')[0]}.*")
        raise CnnlabError(
            f"timm has no published weights {full!r}. Known: {', '.join(tags) or 'none'}; give one with "
            "--weights TAG or a local file with --pretrained PATH."
        )
    path = _hf_cached(cfg.hf_hub_id, cfg.hf_hub_filename)
    if path is None:
        raise CnnlabError(
            f"timm weights {cfg.hf_hub_id} are not in the Hugging Face cache (cnnlab never downloads them). On a "
            f"machine with internet run: python -c \"import timm; timm.create_model('{full}', pretrained=True)\" "
            "and copy its ~/.cache/huggingface/hub folder here (or set HF_HOME), or give a local file: "
            "--pretrained PATH."
        )
    return PretrainedWeights(path, f"hf-cache:{cfg.hf_hub_id}", _preprocessing(cfg))


def _hf_cached(repo_id: str, filename: str | None) -> Path | None:
    """The cached weights file of Hugging Face repo ``repo_id``, or None (looks in the cache only)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for file in filter(None, (filename, "model.safetensors", "pytorch_model.bin")):
        found = try_to_load_from_cache(repo_id, file)
        if isinstance(found, str):
            return Path(found)
    return None


def _preprocessing(cfg) -> Preprocessing:
    """timm's pretrained config (``timm.models.get_pretrained_cfg``) as a :class:`Preprocessing`."""
    size = int(cfg.input_size[-1])
    return Preprocessing(
        weights=f"{PREFIX}{cfg.architecture}.{cfg.tag}" if cfg.tag else PREFIX + cfg.architecture,
        image_size=size,
        resize_size=int(math.floor(size / cfg.crop_pct)),  # timm's eval transform: resize, then centre crop
        mean=[float(v) for v in cfg.mean],
        std=[float(v) for v in cfg.std],
        interpolation=str(cfg.interpolation),
    )
