"""Decoding image files into arrays by one rule, used by every path (training, predict, serve).

Rule (documented in docs/data.md): open with Pillow, apply the EXIF orientation, then convert the
mode to the requested channel count and scale to float32 in [0, 1]:
8-bit modes divide by 255; 16-bit ('I;16*') divide by 65535; 32-bit int ('I') is treated as 16-bit
data (divided by 65535 and clipped); float ('F') is clipped to [0, 1]. Transparent pixels (LA, RGBA,
P with transparency) are composited over white. CMYK goes through Pillow's CMYK->RGB conversion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cnnlab.errors import CnnlabError


def load_image(path: str | Path, channels: int) -> np.ndarray:
    """Read ``path`` as a float32 array (H, W, channels) in [0, 1]. Raises CnnlabError on failure."""
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            return to_array(img, channels)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CnnlabError(f"cannot read image {path}: {exc}") from None


def to_array(img: Image.Image, channels: int) -> np.ndarray:
    """Convert a PIL image of any mode to float32 (H, W, channels) in [0, 1]."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float32) / 65535.0
        arr = np.clip(arr, 0.0, 1.0)[..., None]
        return np.repeat(arr, channels, axis=2) if channels == 3 else arr
    if img.mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)[..., None]
        return np.repeat(arr, channels, axis=2) if channels == 3 else arr
    if img.mode in ("LA", "RGBA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[..., None] if channels == 1 else arr
