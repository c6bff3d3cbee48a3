"""Builds a deliberately messy image folder, and the values the decoding rule must give for each file.

The folder has the ``train/``/``test/`` layout with classes ``broken``, ``empty``, ``exif`` and
``modes``, and holds one file per Pillow mode (with known random pixels), the eight EXIF
orientations of one upright picture, a zero-byte file, a truncated JPEG, an HTML page saved as
``.jpg``, an HEIC-like file saved as ``.jpg``, a text file, an exact duplicate within train and one
across train and test (leakage), an empty class folder, a hidden ``.ipynb_checkpoints`` folder with
images inside (one a byte-copy of a train image, which must not count as a duplicate) and
``.DS_Store`` files. :class:`Messy` records what the doctor must report, so tests compare against
facts set down here rather than against the code under test. Expected arrays are written with NumPy
straight from the rule in ``cnnlab.data.images`` (never by calling it).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 12, 16  # non-square, so a wrong rotation changes the shape
LUMA = np.array([0.299, 0.587, 0.114])


@dataclass
class Messy:
    """The folder and the facts about it."""

    root: Path
    classes: list[str]
    # relative path -> (kind, reason substring) for every unreadable file
    unreadable: dict[str, tuple[str, str]]
    leak_pair: tuple[str, str]  # exact duplicate across train and test
    train_duplicate: tuple[str, str]  # exact duplicate inside train
    empty_class: str
    skipped: list[str]  # non-image files inside the data
    hidden: list[str]  # hidden/system entries that must be ignored
    orientation_files: list[str]  # train/exif/orient_1.png .. orient_8.png
    upright: np.ndarray  # (H, W, 3) uint8 picture every orientation file must load as
    near_groups: list[list[str]]  # near-duplicate groups (same pixels, different bytes)
    # relative path -> expected float (H, W, 1) or (H, W, 3) before the channel step, in [0, 1]
    mode_expected: dict[str, np.ndarray] = field(default_factory=dict)
    mode_of: dict[str, str] = field(default_factory=dict)  # relative path -> Pillow mode when reopened
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # files with image extensions


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _u8(seed: int, *shape: int) -> np.ndarray:
    return _rng(seed).integers(0, 256, size=(H, W, *shape), dtype=np.uint8)


def mode_images() -> dict[str, tuple[Image.Image, str, np.ndarray]]:
    """name -> (image, file extension, expected float array by the rule) for every supported mode."""
    out = {}
    bits = _rng(1).random((H, W)) > 0.5
    out["mode_1"] = (Image.fromarray(bits), ".png", bits.astype(np.float64)[..., None])
    g = _u8(2)
    out["mode_L"] = (Image.fromarray(g), ".png", g[..., None] / 255)
    la = _u8(3, 2)
    c, a = la[..., :1] / 255, la[..., 1:] / 255
    out["mode_LA"] = (_frombytes("LA", la), ".png", c * a + (1 - a))
    palette = _rng(4).integers(0, 256, size=(16, 3), dtype=np.uint8)
    idx = _rng(5).integers(0, 16, size=(H, W), dtype=np.uint8)
    p = _frombytes("P", idx)
    p.putpalette(palette.ravel().tolist())
    out["mode_P"] = (p, ".png", palette[idx] / 255)
    # P with one fully transparent index (3) and P with a partial alpha per palette entry
    alpha_one = np.where(np.arange(16) == 3, 0, 255) / 255
    out["mode_P_trns_index"] = (_with_info(p, transparency=3), ".png", _pal_over_white(palette, idx, alpha_one))
    alphas = _rng(6).integers(0, 256, size=16, dtype=np.uint8)
    expected = _pal_over_white(palette, idx, alphas / 255)
    out["mode_P_trns_alpha"] = (_with_info(p, transparency=bytes(alphas)), ".png", expected)
    rgb = _u8(7, 3)
    out["mode_RGB"] = (Image.fromarray(rgb), ".png", rgb / 255)
    rgba = _u8(8, 4)
    c, a = rgba[..., :3] / 255, rgba[..., 3:] / 255
    out["mode_RGBA"] = (_frombytes("RGBA", rgba), ".png", c * a + (1 - a))
    cmyk = _u8(9, 4) / 255
    out["mode_CMYK"] = (_frombytes("CMYK", _u8(9, 4)), ".tif", (1 - cmyk[..., :3]) * (1 - cmyk[..., 3:]))
    v16 = _rng(10).integers(0, 65536, size=(H, W), dtype=np.uint16)
    v16[0, :2] = (0, 65535)  # both ends of the range
    out["mode_I;16"] = (Image.fromarray(v16), ".png", v16[..., None] / 65535)
    out["mode_I;16B"] = (Image.frombytes("I;16B", (W, H), v16.astype(">u2").tobytes()), ".tif", v16[..., None] / 65535)
    v32 = _rng(11).integers(-1000, 80000, size=(H, W), dtype=np.int32)
    v32[0, :2] = (-5, 70000)  # outside [0, 65535]: clipped
    out["mode_I"] = (Image.fromarray(v32), ".tif", np.clip(v32 / 65535, 0, 1)[..., None])
    f = (_rng(12).random((H, W)) * 1.4 - 0.2).astype(np.float32)
    f[0, :3] = (np.nan, -0.5, 2.0)
    out["mode_F"] = (Image.fromarray(f), ".tif", np.clip(np.nan_to_num(f, nan=0.0), 0, 1)[..., None].astype(np.float64))
    return out


def _frombytes(mode: str, arr: np.ndarray) -> Image.Image:
    """An image of ``mode`` holding exactly ``arr``'s bytes, (H, W[, bands]) uint8."""
    return Image.frombytes(mode, (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr).tobytes())


def _with_info(img: Image.Image, **info) -> Image.Image:
    img = img.copy()
    img.info.update(info)
    return img


def _pal_over_white(palette: np.ndarray, idx: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[idx][..., None]
    return palette[idx] / 255 * a + (1 - a)


def expected_channels(arr: np.ndarray, channels: int) -> np.ndarray:
    """The rule's channel step: repeat gray to 3, or BT.601 luma down to 1."""
    if arr.shape[-1] == channels:
        return arr
    return np.repeat(arr, 3, axis=2) if channels == 3 else (arr @ LUMA)[..., None]


def oriented(upright: np.ndarray, tag: int) -> np.ndarray:
    """The stored pixels of a photo whose EXIF orientation ``tag`` turns them into ``upright``.

    Written from the EXIF definition (where the stored row 0 / column 0 are shown), not from Pillow.
    """
    u = upright
    return {
        1: u,
        2: u[:, ::-1],  # mirrored
        3: u[::-1, ::-1],  # rotated 180
        4: u[::-1, :],  # flipped vertically
        5: u.transpose(1, 0, 2),  # transposed
        6: np.rot90(u, 1),  # shown after a 90 degree clockwise turn
        7: u[::-1, ::-1].transpose(1, 0, 2),  # transverse
        8: np.rot90(u, -1),  # shown after a 90 degree counter-clockwise turn
    }[tag]


def save_with_orientation(img: Image.Image, path: Path, tag: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = tag
    img.save(path, exif=exif)


def jpeg_bytes(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    arr = _rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_u8(seed, 3)).save(buf, "PNG")
    return buf.getvalue()


def _write(root: Path, rel: str, data: bytes) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def build_messy_folder(root: Path, trainable: bool = False) -> Messy:
    """Create the messy folder under ``root`` (which may exist and be empty) and return its facts.

    ``trainable=True`` builds the variant for training tests: no empty class folder (which stops
    training before any file is read) and 20 more good images per train class, so the 4 unreadable
    files are under 5 % of the images (the default limit of ``--on-bad-image skip``).
    """
    root.mkdir(parents=True, exist_ok=True)
    m = Messy(
        root=root,
        classes=["broken", "exif", "modes"] if trainable else ["broken", "empty", "exif", "modes"],
        unreadable={
            "train/broken/zero.jpg": ("empty", "empty file (0 bytes)"),
            "train/broken/truncated.jpg": ("truncated", "truncated"),
            "train/broken/page.jpg": ("not_image", "HTML"),
            "train/broken/iphone.jpg": ("unsupported", "HEIC"),
        },
        leak_pair=("train/modes/mode_RGB.png", "test/modes/rgb_copy.png"),
        train_duplicate=("train/broken/ok_1.png", "train/broken/ok_1_copy.png"),
        empty_class="" if trainable else "empty",
        skipped=["train/broken/notes.txt"],
        hidden=[".DS_Store", "train/.ipynb_checkpoints", "train/modes/.DS_Store", "train/modes/.ipynb_checkpoints"],
        orientation_files=[f"train/exif/orient_{k}.png" for k in range(1, 9)],
        upright=_u8(20, 3),
        # the eight orientations decode to one picture; I;16 PNG and I;16B TIFF hold the same pixels
        near_groups=[
            [f"train/exif/orient_{k}.png" for k in range(1, 9)],
            ["train/modes/mode_I_16.png", "train/modes/mode_I_16B.tif"],
        ],
    )
    for name, (img, ext, expected) in mode_images().items():
        rel = f"train/modes/{name.replace(';', '_')}{ext}"
        _save_new(img, root / rel)
        m.mode_expected[rel] = expected
        m.mode_of[rel] = img.mode
    (root / "train/exif").mkdir(parents=True)
    for k in range(1, 9):
        stored = Image.fromarray(np.ascontiguousarray(oriented(m.upright, k)))
        save_with_orientation(stored, root / f"train/exif/orient_{k}.png", k)
    ok1 = png_bytes(30)
    _write(root, "train/broken/ok_1.png", ok1)
    _write(root, "train/broken/ok_1_copy.png", ok1)
    _write(root, "train/broken/zero.jpg", b"")
    full = jpeg_bytes(31)
    _write(root, "train/broken/truncated.jpg", full[: len(full) * 3 // 5])
    html = b"<!DOCTYPE html>\n<html><head><title>Cat</title></head><body>403 Forbidden</body></html>\n"
    _write(root, "train/broken/page.jpg", html)
    _write(root, "train/broken/iphone.jpg", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    _write(root, "train/broken/notes.txt", b"where these photos came from\n")
    if not trainable:
        (root / "train/empty").mkdir(parents=True)
        (root / "test/empty").mkdir(parents=True)
    _write(root, "test/broken/ok_2.png", png_bytes(32))
    _write(root, "test/exif/ok_3.jpg", jpeg_bytes(33))
    _write(root, "test/modes/rgb_copy.png", (root / m.leak_pair[0]).read_bytes())
    # hidden things: must be ignored (the checkpoint copy would otherwise be a duplicate)
    _write(root, ".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(32))
    _write(root, "train/modes/.DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(32))
    _write(root, "train/modes/.ipynb_checkpoints/mode_RGB-checkpoint.png", (root / m.leak_pair[0]).read_bytes())
    _write(root, "train/.ipynb_checkpoints/stray.png", png_bytes(34))
    m.counts = {
        "train": {"broken": 6, "empty": 0, "exif": 8, "modes": len(m.mode_expected)},
        "test": {"broken": 1, "empty": 0, "exif": 1, "modes": 1},
    }
    if trainable:
        for split in m.counts:
            del m.counts[split]["empty"]
        for k, cls in enumerate(m.classes):
            for i in range(20):
                _write(root, f"train/{cls}/good_{i:02d}.png", png_bytes(1000 + 100 * k + i))
            m.counts["train"][cls] += 20
    return m


def _save_new(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
