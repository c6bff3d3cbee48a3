"""Decoding image files into float arrays by one rule, shared by training, the doctor, predict and serve.

Real folders hold every kind of file (torchvision issue #138: a truncated JPEG kills a DataLoader
worker; grayscale or CMYK files break a 3-channel normalisation), so every path that reads a user's
image goes through :func:`open_image` and :func:`to_array`, and anything wrong becomes one
:class:`ImageReadError` (a ``CnnlabError``) whose ``kind`` says what kind of problem it is.

The rule, applied after the file is fully decoded and its EXIF orientation (tags 1-8) is undone:

* 8-bit modes (``1``, ``L``, ``P``, ``RGB``, ``YCbCr``, ``HSV``, ...) are divided by 255; mode ``1``
  becomes exactly 0 or 1.
* 16-bit modes (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``) are divided by 65535.
* ``I`` (32-bit signed integers; older Pillow opens 16-bit PNGs this way) is treated as 16-bit data:
  divided by 65535 and clipped to [0, 1], so negative values become 0 and values above 65535 become 1.
* ``F`` (32-bit float) is taken to be in [0, 1] already: clipped to [0, 1], NaN becomes 0.
* ``CMYK`` becomes RGB as ``R = (1 - C)(1 - K)`` (likewise G with M, B with Y), computed in float;
  Pillow's own conversion is the same formula rounded to 8 bits.
* Transparency (``LA``, ``PA``, ``RGBA``, ``P``/``L``/``RGB`` with a ``transparency`` entry) is
  composited over white in float: ``out = colour * alpha + (1 - alpha)``; a fully transparent pixel
  becomes white (1.0).
* Channels: a 1-channel result is repeated to 3 channels; a 3-channel result becomes 1 channel by
  ITU-R BT.601 luma, ``0.299 R + 0.587 G + 0.114 B`` (in float, no rounding).

The result is float32 ``(H, W, C)`` in [0, 1] with C the model's channel count (1 or 3).
Multi-frame files (animated GIF, multi-page TIFF) give their first frame. Images with more than
:data:`MAX_IMAGE_PIXELS` pixels are refused from the header alone, before decoding (decompression
bombs), and truncated files raise instead of coming back half grey: this module never sets
``ImageFile.LOAD_TRUNCATED_IMAGES``. Users read the same rule in docs/own-images.md.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.errors import CnnlabError
from cnnlab.files.kinds import NotRegularFile, read_regular_bytes

# Refuse images above this many pixels (8000 x 5000) before decoding them. Pillow's own limit
# (Image.MAX_IMAGE_PIXELS, 89,478,485, an error only at twice that) is global state we leave alone.
MAX_IMAGE_PIXELS = 40_000_000

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Modes :func:`to_array` converts; anything else (e.g. LAB, I;16S) is an "unsupported mode" error.
SUPPORTED_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV", "I", "F"}
    | SIXTEEN_BIT_MODES
)
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"} | SIXTEEN_BIT_MODES)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601

# ImageReadError.kind values, in the order the doctor reports them.
READ_ERROR_KINDS = ("empty", "truncated", "not_image", "unsupported", "too_large", "corrupt", "not_a_file")


class ImageReadError(CnnlabError):
    """An image file that cannot be used; ``kind`` is one of READ_ERROR_KINDS, ``reason`` a short text."""

    def __init__(self, path: str | Path, kind: str, reason: str):
        self.path, self.kind, self.reason = str(path), kind, reason
        super().__init__(
            f"cannot read image {path}: {reason.rstrip('.')}. Replace or delete the file "
            "('cnnlab data check' lists every such file)."
        )

    def __reduce__(self):
        # keep the three fields through pickling (DataLoader workers send exceptions to the main process)
        return (type(self), (self.path, self.kind, self.reason))


def _sniff(data: bytes) -> tuple[str, str]:
    """(kind, reason) for bytes Pillow could not identify, guessed from their first bytes."""
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "not_image", "not an image: the file is HTML (a web page saved with an image name?)"
    if head.startswith(b"<"):
        return "not_image", "not an image: the file is XML/SVG text"
    if head.startswith(b"%pdf"):
        return "not_image", "not an image: the file is a PDF"
    if data[4:8] == b"ftyp":
        brand = data[8:12].decode("ascii", "replace")
        return "unsupported", f"unsupported format: HEIC/AVIF-style file (brand {brand!r}) that Pillow cannot decode"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in data[:512]):
        return "not_image", "not an image: the file is plain text"
    return "unsupported", "unsupported or unrecognised format (Pillow cannot identify it)"


def _classify(exc: Exception) -> tuple[str, str]:
    """(kind, reason) for an exception raised while decoding an identified image."""
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, Image.DecompressionBombError):
        return "too_large", f"too large: {msg}"
    if isinstance(exc, EOFError) or "truncat" in msg.lower():
        return "truncated", f"truncated: {msg}"
    if "decoder" in msg and "not available" in msg:
        return "unsupported", f"unsupported format: {msg}"
    return "corrupt", f"corrupt: {msg}"


def open_image(source: str | Path | bytes, *, name: str | Path | None = None, max_pixels: int | None = None):
    """Open and fully decode an image (path or bytes), refuse bombs, and undo its EXIF orientation.

    Args:
        source: a file path, or the file's bytes (the doctor reads each file once and hashes the same bytes).
        name: the file name used in error messages (defaults to the path, or '<bytes>').
        max_pixels: the pixel cap, default MAX_IMAGE_PIXELS.

    Returns:
        A loaded ``PIL.Image.Image`` detached from the file, upright; ``.format`` is the detected format.

    Raises:
        ImageReadError: empty, truncated, not an image, unsupported, too large or otherwise corrupt.
    """
    name = str(name if name is not None else (source if not isinstance(source, bytes) else "<bytes>"))
    cap = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:  # a FIFO or a device named x.jpg is refused, never read (it would block or never end)
        data = source if isinstance(source, bytes) else read_regular_bytes(source)
    except NotRegularFile as exc:
        raise ImageReadError(name, "not_a_file", exc.strerror) from None
    except OSError as exc:
        raise ImageReadError(name, "corrupt", f"cannot open the file: {exc.strerror or exc}") from None
    if not data:
        raise ImageReadError(name, "empty", "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our cap below decides
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageReadError(name, *_sniff(data)) from None
    except Exception as exc:  # Pillow raises many types for bad headers (SyntaxError, struct.error, ...)
        raise ImageReadError(name, *_classify(exc)) from None
    w, h = img.size
    if w * h > cap:
        raise ImageReadError(name, "too_large", f"too large: {w}x{h} = {w * h:,} pixels (limit {cap:,})")
    try:
        img.load()  # decode now: a truncated file raises here, not later in a training worker
        fmt = img.format
        upright = ImageOps.exif_transpose(img)
    except Exception as exc:
        raise ImageReadError(name, *_classify(exc)) from None
    upright.format = fmt  # transpose drops it; the doctor compares it with the extension
    return upright


def load_image(path: str | Path, channels: int, *, max_pixels: int | None = None) -> np.ndarray:
    """Read ``path`` as float32 (H, W, channels) in [0, 1] by the module's rule. Raises ImageReadError."""
    return to_array(open_image(path, max_pixels=max_pixels), channels, name=path)


def _composite_over_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, C+1) floats in [0, 1], alpha last -> (H, W, C) composited over white."""
    colour, alpha = rgba[..., :-1], rgba[..., -1:]
    return colour * alpha + (1.0 - alpha)


def _to_float(img: Image.Image) -> np.ndarray:
    """The rule's first half: any supported mode -> float32 (H, W, 1) or (H, W, 3) in [0, 1]."""
    mode = img.mode
    if mode in SIXTEEN_BIT_MODES:
        return (np.asarray(img).astype(np.float32) / 65535.0)[..., None]
    if mode == "I":
        return np.clip(np.asarray(img).astype(np.float64) / 65535.0, 0.0, 1.0).astype(np.float32)[..., None]
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img).astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(arr, 0.0, 1.0)[..., None]
    if mode == "CMYK":
        cmyk = np.asarray(img).astype(np.float32) / 255.0  # (H, W, 4)
        return (1.0 - cmyk[..., :3]) * (1.0 - cmyk[..., 3:])
    gray = mode in _GRAY_MODES
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in img.info:
        arr = np.asarray(img.convert("LA" if gray else "RGBA")).astype(np.float32) / 255.0
        return _composite_over_white(arr)
    if gray:
        return (np.asarray(img.convert("L")).astype(np.float32) / 255.0)[..., None]
    return np.asarray(img.convert("RGB")).astype(np.float32) / 255.0


def uint8_pixels(img: Image.Image, channels: int) -> np.ndarray | None:
    """(H, W, channels) uint8 whose float32 ``/ 255`` is exactly ``to_array(img, channels)``, for the
    common case of an RGB or L image without transparency; None when the rule needs more (mode
    conversions, alpha, 16-bit). Lets batch prediction keep bytes and convert a whole batch at once."""
    if "transparency" in img.info:
        return None
    if img.mode == "RGB" and channels == 3:
        return np.asarray(img)
    if img.mode == "L" and channels == 1:
        return np.asarray(img)[..., None]
    return None


def to_array(img: Image.Image, channels: int, *, name: str | Path = "<image>") -> np.ndarray:
    """Convert a decoded PIL image of any supported mode to float32 (H, W, channels) in [0, 1].

    Args:
        img: an already-oriented image (``open_image`` does that).
        channels: 1 (grayscale, BT.601 luma) or 3 (RGB).
        name: used in the error message for an unsupported mode.
    """
    if channels not in (1, 3):
        raise CnnlabError(f"channels must be 1 or 3, got {channels}.")
    if img.mode not in SUPPORTED_MODES:
        raise ImageReadError(name, "unsupported", f"unsupported image mode {img.mode!r}")
    arr = _to_float(img)  # (H, W, 1) or (H, W, 3)
    if arr.shape[-1] != channels:
        arr = np.repeat(arr, 3, axis=2) if channels == 3 else (arr @ _LUMA)[..., None]
    return np.ascontiguousarray(arr, dtype=np.float32)
