"""What published pretrained weights are: where their tensors lie and how their input was
preprocessed. Shared by ``finetune.weights`` (torchvision) and ``models.timm_models`` (timm)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError

MAX_SIDE = 4096  # largest image side a weights file may ask for


@dataclass(frozen=True)
class Preprocessing:
    """How the pretrained weights expect their input (torchvision's/timm's evaluation transform)."""

    weights: str  # e.g. "ResNet18_Weights.IMAGENET1K_V1" or "timm:resnet18.a1_in1k"
    image_size: int  # side of the square the network saw (the centre crop)
    resize_size: int  # shorter side before that crop
    mean: list[float]  # per channel, on [0, 1] pixels
    std: list[float]
    interpolation: str  # "bilinear" | "bicubic" | ...

    def stats(self, channels: int) -> tuple[list[float], list[float]]:
        """(mean, std) for ``channels`` input channels; a grey model gets the average over RGB.

        ``transfer.adapt_conv_weight`` sums the RGB filters for a 1-channel model, so a grey pixel
        then stands for an equal-RGB pixel, normalised with the channel-averaged statistics.
        """
        if channels == len(self.mean):
            return list(self.mean), list(self.std)
        if len(self.mean) == 1:  # grey weights, colour data: the first conv splits its filter into thirds
            return list(self.mean) * channels, list(self.std) * channels
        if channels == 1:
            return [sum(self.mean) / len(self.mean)], [sum(self.std) / len(self.std)]
        raise CnnlabError(f"{self.weights} expects {len(self.mean)} input channels; cannot use them with {channels}.")

    def resize_for(self, image_size: int) -> int | None:
        """The shorter side to resize to before the central ``image_size`` crop: the weights' own ratio
        (256 for 224), scaled to another image size; None when the weights resize the whole image."""
        if self.resize_size <= self.image_size:
            return None
        return int(round(image_size * self.resize_size / self.image_size))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Preprocessing:
        """The inverse of :meth:`to_dict` for a value read from a file, every field checked."""
        try:
            pre = cls(
                weights=str(d["weights"]),
                image_size=int(d["image_size"]),
                resize_size=int(d["resize_size"]),
                mean=[float(v) for v in d["mean"]],
                std=[float(v) for v in d["std"]],
                interpolation=str(d["interpolation"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CnnlabError(
                f"{where}: unreadable preprocessing record ({exc!r}); convert the weights again"
            ) from None
        sizes_ok = 1 <= pre.image_size <= MAX_SIDE and 1 <= pre.resize_size <= MAX_SIDE
        stats_ok = len(pre.mean) == len(pre.std) in (1, 3) and all(0 < v < 1e3 for v in pre.std)
        if not (sizes_ok and stats_ok and all(abs(v) < 1e3 for v in pre.mean)):
            raise CnnlabError(
                f"{where}: preprocessing out of range (sizes 1..{MAX_SIDE}, 1 or 3 channels, std > 0): {d}"
            )
        return pre


@dataclass(frozen=True)
class PretrainedWeights:
    """Where the tensors are and how their input was preprocessed (None: a local file, data statistics)."""

    path: Path
    source: str  # the URL or file they came from
    preprocessing: Preprocessing | None
    architecture: str | None = None  # a cnnlab run or model folder: the zoo name it was trained as
    kwargs: dict[str, Any] | None = None  # ... and its builder arguments
