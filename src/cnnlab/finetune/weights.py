"""Published pretrained weights by name: torchvision's ImageNet sets, downloaded once and hash-checked.

Seed 002 ("Transfer Learning") starts from a network pretrained on a large dataset; every tool a
practitioner knows does that in one line. ``--pretrained imagenet`` (or ``--weights IMAGENET1K_V2``
for a particular set) does it here for every zoo model that is torchvision's own architecture
(``resnet18``, ``efficientnet_b0``, ``mobilenet_v2``, ``densenet121``, ``vgg16_bn``, ...):

- The URL and hash come from torchvision's weights enums (``torchvision.models.get_model_weights``),
  never from a table of ours. As in ``torch.hub.load_state_dict_from_url(check_hash=True)``, the file
  name carries the first hex digits of the file's SHA-256 (``resnet18-f37072fd.pth``).
- The file is fetched once into ``$CNNLAB_CACHE/weights`` (default ``~/.cache/cnnlab/weights``) with
  a progress bar, written to a temporary file in that folder and renamed only once its hash matches,
  so an interrupted or corrupt download never leaves a file under the real name.
- A mirror (``--model.weights_mirror`` or ``$CNNLAB_WEIGHTS_MIRROR``) is looked at first: a folder
  holding the files under their own names, or an ``http(s)://`` base URL serving them.
- Offline, the one error names the URL and the folder to put the file in.
- The weights' own preprocessing (``weights.transforms()``: crop size, resize size, mean/std,
  interpolation) comes back as :class:`Preprocessing`; training uses its crop size as the image size
  and its mean/std as the normalisation, and the model file records it.

``timm:NAME`` models take their named weights from the Hugging Face cache instead (no network; see
``cnnlab.models.timm_models``). :func:`resolve_pretrained` is the one entry point.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from cnnlab.data.folder import file_sha256
from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.files.download import DownloadError, mirror_file
from cnnlab.files.download import download as fetch
from cnnlab.finetune.convert import packaged_weights, safetensors_preprocessing
from cnnlab.models.pretrained import Preprocessing, PretrainedWeights

NAMED = "imagenet"  # --pretrained imagenet: the weights set torchvision calls DEFAULT
CACHE_ENV = "CNNLAB_CACHE"
MIRROR_ENV = "CNNLAB_WEIGHTS_MIRROR"
TIMEOUT_S = 60
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's rule: resnet18-f37072fd.pth -> sha256 starts f37072fd


def resolve_pretrained(
    model_name: str,
    pretrained: str | None = None,
    weights: str | None = None,
    *,
    mirror: str | None = None,
    cache: str | Path | None = None,
    progress: bool = True,
) -> PretrainedWeights | None:
    """Turn ``model.pretrained`` / ``model.weights`` into a local file and its preprocessing.

    Args:
        model_name: the zoo name (``resnet50``) or ``timm:NAME``.
        pretrained: ``"imagenet"`` (the published default set), a local weights file, a cnnlab
            model/run folder or a built-in run (``demo:mnist``), or None.
        weights: a published set by name (``IMAGENET1K_V2``, ``DEFAULT``; for timm a tag such as
            ``a1_in1k``); implies ``pretrained="imagenet"``.
        mirror: folder or base URL holding weight files under their own names (default
            ``$CNNLAB_WEIGHTS_MIRROR``).
        cache: download folder (default ``$CNNLAB_CACHE/weights`` or ``~/.cache/cnnlab/weights``).

    Returns:
        None when neither is set; a cnnlab run or model folder comes back with its own input size,
        mean and std as the preprocessing; other local files with ``preprocessing=None``.
    """
    if not pretrained and not weights:
        return None
    if pretrained and pretrained.lower() != NAMED:
        if weights:
            raise CnnlabError(
                f"model.weights={weights!r} names a published weights set, but model.pretrained={pretrained!r} "
                "is a local file; give one of them (--pretrained imagenet --weights NAME, or --pretrained PATH)."
            )
        from cnnlab.runs.builtin import resolve_run_path  # demo:mnist -> the run folder shipped in the package

        path = resolve_run_path(pretrained).expanduser()
        meta = cnnlab_meta(path)
        arch, kwargs = (meta["architecture"], dict(meta.get("kwargs") or {})) if meta else (None, None)
        pre = cnnlab_preprocessing(path, meta) if meta else safetensors_preprocessing(path)
        return PretrainedWeights(path, str(pretrained), pre, arch, kwargs)
    if model_name.startswith("timm:"):
        return _timm_weights(model_name.removeprefix("timm:"), weights)
    entry = torchvision_weights(model_name, weights)
    path = fetch_weights(entry.url, cache=cache, mirror=mirror, progress=progress, max_bytes=size_cap(entry))
    return PretrainedWeights(path, entry.url, preprocessing_of(entry, model_name))


def _timm_weights(name: str, tag: str | None) -> PretrainedWeights:
    """timm's own weights from the Hugging Face cache; failing that, weights an installed package ships
    for that architecture (EfficientNet-Lite0: ``cnnlab.finetune.convert``)."""
    from cnnlab.models.timm_models import timm_pretrained

    try:
        return timm_pretrained(name, tag)
    except CnnlabError:
        found = None if tag else packaged_weights(name, weights_cache())
        if found is None:
            raise
        return found


def cnnlab_meta(path: Path) -> dict[str, Any] | None:
    """The checked model.json of a cnnlab run or model folder; None for anything else."""
    from cnnlab.runs.meta import META, check_model_meta
    from cnnlab.runs.model_file import read_meta

    if not path.is_dir() or not any((f / META).is_file() for f in (path, path / "model")):
        return None
    meta = read_meta(path)  # a run folder's model/ or the folder itself; unreadable JSON is named
    check_model_meta(meta, path)
    return meta


def cnnlab_preprocessing(path: Path, meta: dict[str, Any] | None = None) -> Preprocessing | None:
    """The input size and normalisation a cnnlab run or model folder was trained with (from its
    model.json), so fine-tuning from one's own run feeds the network what it learnt on; None otherwise."""
    meta = meta if meta is not None else cnnlab_meta(path)
    if meta is None:
        return None
    _, size, _ = meta["input_shape"]  # square, and mean/std finite numbers: check_model_meta saw to it
    name = f"cnnlab {meta['architecture']} ({path.name})"
    mean, std = [float(v) for v in meta["mean"]], [float(v) for v in meta["std"]]
    return Preprocessing(name, size, size, mean, std, "bilinear")


# ---------------------------------------------------------------- torchvision's weights enums


def torchvision_backed() -> list[str]:
    """Zoo models that are torchvision's own architectures (so torchvision publishes weights for them)."""
    import torchvision.models as tvm

    from cnnlab.models import MODELS

    return sorted(n for n in tvm.list_models(module=tvm) if n in MODELS)


def torchvision_weights(model_name: str, weights: str | None = None) -> Any:
    """The member of torchvision's weights enum for zoo model ``model_name`` (``DEFAULT`` unless named).

    ``weights`` may be a member name (``IMAGENET1K_V2``) or torchvision's full name
    (``ResNet50_Weights.IMAGENET1K_V2``).
    """
    import torchvision.models as tvm

    backed = torchvision_backed()
    if model_name not in backed:
        raise CnnlabError(
            f"no published ImageNet weights for model {model_name!r}: they exist for the zoo models that are "
            f"torchvision's architectures ({', '.join(backed)}) and for timm:NAME models. "
            "For another model give a local file: --pretrained PATH."
        )
    enum = tvm.get_model_weights(model_name)
    key = (weights or "DEFAULT").split(".")[-1]
    if key not in enum.__members__:
        names = list(enum.__members__)
        raise CnnlabError(
            f"{enum.__name__} has no weights {key!r}.{did_you_mean(key, names)} Known: {', '.join(names)}."
        )
    return enum.__members__[key]


def preprocessing_of(entry: Any, model_name: str) -> Preprocessing:
    """The evaluation transform of a torchvision weights entry as a :class:`Preprocessing`."""
    t = entry.transforms()  # torchvision.transforms._presets.ImageClassification
    mean, std = [float(v) for v in t.mean], [float(v) for v in t.std]
    if model_name == "googlenet":
        # torchvision trained these with transform_input=True, which maps ImageNet-normalised input to
        # (x - 0.5) / 0.5; normalising that way directly is the same and keeps the zoo builder unchanged
        mean, std = [0.5] * 3, [0.5] * 3
    name = f"{type(entry).__name__}.{entry.name}" if hasattr(entry, "name") else str(entry)
    return Preprocessing(
        weights=name,
        image_size=int(t.crop_size[0]),
        resize_size=int(t.resize_size[0]),
        mean=mean,
        std=std,
        interpolation=str(getattr(t.interpolation, "value", t.interpolation)),
    )


# ---------------------------------------------------------------- cache, mirror, download


def weights_cache() -> Path:
    """Folder for downloaded weights: ``$CNNLAB_CACHE/weights`` or ``~/.cache/cnnlab/weights``."""
    env = os.environ.get(CACHE_ENV)
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "cnnlab") / "weights"


def hash_prefix(file_name: str) -> str:
    """The SHA-256 prefix torchvision puts in its file names (``resnet18-f37072fd.pth`` -> ``f37072fd``)."""
    m = _HASH_IN_NAME.search(file_name)
    if m is None or len(m.group(1)) < 6:
        raise CnnlabError(f"weights file name {file_name!r} carries no hash (expected NAME-HEXDIGITS.pth).")
    return m.group(1)


def _checked(path: Path, prefix: str, where: str) -> Path:
    digest = file_sha256(path)
    if not digest.startswith(prefix):
        raise CnnlabError(
            f"{path} is not the published file: its sha256 starts {digest[: len(prefix)]}, expected {prefix} "
            f"(the hash in its name). Delete it and {where}."
        )
    return path


def fetch_weights(
    url: str,
    *,
    cache: str | Path | None = None,
    mirror: str | None = None,
    progress: bool = True,
    max_bytes: int | None = None,
) -> Path:
    """A hash-checked local copy of ``url``: from the cache, else the mirror, else downloaded into the cache."""
    name = url.rsplit("/", 1)[-1]
    prefix = hash_prefix(name)
    folder = Path(cache).expanduser() if cache else weights_cache()
    if (folder / name).is_file():
        return _checked(folder / name, prefix, "run again to download it")
    mirror = mirror or os.environ.get(MIRROR_ENV)
    if mirror and not mirror.startswith(("http://", "https://")):
        local = mirror_file(mirror, name)  # an entry that is not a regular file is refused, not passed over
        if local is not None:
            return _checked(local, prefix, f"put the file from {url} in {local.parent}/")
    elif mirror:
        url = f"{mirror.rstrip('/')}/{name}"
    return download(url, folder / name, prefix, progress=progress, mirror=mirror, max_bytes=max_bytes)


def download(
    url: str, dest: Path, prefix: str, *, progress: bool = True, mirror: str | None = None, max_bytes: int | None = None
) -> Path:
    """Stream ``url`` to ``dest`` through the shared downloader: kept only if its sha256 starts with
    ``prefix``, cut off beyond ``max_bytes`` (the published size when known)."""
    try:
        return fetch(url, dest, prefix, max_bytes=max_bytes, timeout=TIMEOUT_S, progress=progress)
    except DownloadError as exc:
        if not exc.offline:
            raise CnnlabError(f"{exc.reason}. Try again, or put the published {dest.name} in {dest.parent}/.") from None
        where = f" or in the mirror folder {mirror}/" if mirror and not mirror.startswith("http") else ""
        raise CnnlabError(
            f"cannot download pretrained weights from {url} ({exc.cause}); offline? "
            f"Fetch that file on a machine with internet access and put it, named {dest.name}, in "
            f"{dest.parent}/{where} (or point $CNNLAB_WEIGHTS_MIRROR at a folder holding it)."
        ) from None
    except CnnlabError as exc:
        raise CnnlabError(f"{exc}; set $CNNLAB_CACHE to a writable folder.") from None


def size_cap(entry: Any) -> int | None:
    """The most bytes a download of a torchvision weights entry may bring: its published size
    (``meta["_file_size"]``, MiB rounded to 3 decimals) plus the rounding; None when not published."""
    mib = getattr(entry, "meta", {}).get("_file_size")
    return int((float(mib) + 0.001) * (1 << 20)) + 1 if isinstance(mib, (int, float)) and mib > 0 else None
