"""Helpers for the server and predictor tests: uploads of awkward modes, bad files of every kind, readiness."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
from PIL import Image

from image_helpers import digit_like


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def cmyk_jpeg(size: int = 40) -> bytes:
    rgb = Image.merge("RGB", [digit_like(size, s) for s in range(3)])
    return encode(rgb.convert("CMYK"), "JPEG", quality=95)


def sixteen_bit_png(size: int = 28) -> bytes:
    arr = (np.asarray(digit_like(size), dtype=np.uint16) * 257).astype(np.uint16)  # full 16-bit range
    return encode(Image.fromarray(arr), "PNG")


def truncated_jpeg(size: int = 64) -> bytes:
    data = encode(Image.merge("RGB", [digit_like(size, s) for s in range(3)]), "JPEG", quality=90)
    return data[: len(data) // 2]


def html_named_jpg() -> bytes:
    return b"<!DOCTYPE html>\n<html><head><title>not an image</title></head><body>hi</body></html>\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A real, valid 1-bit grayscale PNG of width x height zero pixels; a few tens of KB on disk.

    Decoded as 8-bit it would need width * height bytes (400 MB for the default); built row by row
    here so the test itself never holds the raw image either.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, grayscale
    # every row is filter byte 0 + packed zero bits, so the raw stream is all zeros: compress it in 1 MB pieces
    total, piece = height * (1 + (width + 7) // 8), b"\x00" * (1 << 20)
    comp = zlib.compressobj(9)
    parts = [comp.compress(piece[: min(len(piece), total - i)]) for i in range(0, total, len(piece))]
    idat = b"".join(parts) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def wait_ready(client, timeout: float = 30.0) -> None:
    """Poll GET /ready until 200 (the model loads in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError("the server did not become ready")
