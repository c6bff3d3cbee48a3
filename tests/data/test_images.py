"""Tests for cnnlab.data.images: every mode follows the documented rule, EXIF, bombs, broken files."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from messy import H, W, expected_channels, jpeg_bytes, oriented, save_with_orientation
from PIL import Image, ImageFile

from cnnlab.data import images
from cnnlab.data.images import MAX_IMAGE_PIXELS, ImageReadError, load_image, open_image, to_array
from cnnlab.errors import CnnlabError

MODE_FILES = [
    "train/modes/mode_1.png",
    "train/modes/mode_L.png",
    "train/modes/mode_LA.png",
    "train/modes/mode_P.png",
    "train/modes/mode_P_trns_index.png",
    "train/modes/mode_P_trns_alpha.png",
    "train/modes/mode_RGB.png",
    "train/modes/mode_RGBA.png",
    "train/modes/mode_CMYK.tif",
    "train/modes/mode_I_16.png",
    "train/modes/mode_I_16B.tif",
    "train/modes/mode_I.tif",
    "train/modes/mode_F.tif",
]


def test_fixture_covers_every_mode_of_the_issue(messy):
    assert sorted(MODE_FILES) == sorted(messy.mode_expected)
    modes = {open_image(messy.root / rel).mode for rel in MODE_FILES}
    assert modes == {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I;16B", "I", "F"}
    # the file on disk really has the mode the fixture meant (no silent conversion when saving)
    for rel in MODE_FILES:
        assert open_image(messy.root / rel).mode == messy.mode_of[rel], rel


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("rel", MODE_FILES)
def test_every_mode_follows_the_rule(messy, rel, channels):
    got = load_image(messy.root / rel, channels)
    want = expected_channels(messy.mode_expected[rel], channels)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.shape == (H, W, channels)
    assert got.min() >= 0.0 and got.max() <= 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_transparent_pixels_become_white(messy):
    # palette index 3 is the transparent one; those pixels must be exactly 1.0 in every channel
    img = Image.open(messy.root / "train/modes/mode_P_trns_index.png")
    idx = np.asarray(img)
    got = load_image(messy.root / "train/modes/mode_P_trns_index.png", 3)
    assert (idx == 3).any()
    assert np.all(got[idx == 3] == 1.0)


def test_sixteen_bit_extremes_map_to_0_and_1(messy):
    got = load_image(messy.root / "train/modes/mode_I_16.png", 1)
    assert got[0, 0, 0] == 0.0 and got[0, 1, 0] == 1.0
    got_i = load_image(messy.root / "train/modes/mode_I.tif", 1)  # stored -5 and 70000: clipped
    assert got_i[0, 0, 0] == 0.0 and got_i[0, 1, 0] == 1.0
    got_f = load_image(messy.root / "train/modes/mode_F.tif", 1)  # stored NaN, -0.5, 2.0
    assert got_f[0, :3, 0].tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("tag", range(1, 9))
def test_exif_orientations_give_the_upright_picture(messy, tag):
    rel = messy.orientation_files[tag - 1]
    stored = np.asarray(Image.open(messy.root / rel))
    if tag > 1:  # the stored pixels differ from the upright picture, so the test can fail
        assert stored.shape != messy.upright.shape or not np.array_equal(stored, messy.upright)
    got = load_image(messy.root / rel, 3)
    assert got.shape == messy.upright.shape
    np.testing.assert_array_equal(np.rint(got * 255).astype(np.uint8), messy.upright)


def test_exif_orientation_on_jpeg(tmp_path):
    upright = np.zeros((24, 40, 3), np.uint8)
    upright[:8, :] = (255, 0, 0)  # a red band along the top edge of the upright picture
    for tag in (3, 6, 8):
        path = tmp_path / f"o{tag}.jpg"
        save_with_orientation(Image.fromarray(np.ascontiguousarray(oriented(upright, tag))), path, tag)
        got = load_image(path, 3)
        assert got.shape == (24, 40, 3)
        assert got[2, 20, 0] > 0.9 and got[20, 20, 0] < 0.1


def test_cmyk_jpeg_round_trip():
    for cmyk, rgb in [((0, 0, 0, 0), (1, 1, 1)), ((0, 0, 0, 255), (0, 0, 0)), ((255, 0, 0, 0), (0, 1, 1))]:
        buf = io.BytesIO()
        Image.new("CMYK", (16, 16), cmyk).save(buf, "JPEG", quality=95)
        got = load_image_bytes(buf.getvalue(), 3)
        np.testing.assert_allclose(got[8, 8], rgb, atol=0.02)


def load_image_bytes(data: bytes, channels: int) -> np.ndarray:
    return to_array(open_image(data), channels)


def test_unreadable_files_in_the_messy_folder(messy):
    for rel, (kind, reason) in messy.unreadable.items():
        with pytest.raises(ImageReadError) as err:
            load_image(messy.root / rel, 3)
        assert err.value.kind == kind, rel
        assert reason in err.value.reason, rel
        assert rel.split("/")[-1] in str(err.value)
        assert isinstance(err.value, CnnlabError)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    ("data", "kind", "words"),
    [
        (b"", "empty", "0 bytes"),
        (b"  <?xml version='1.0'?><svg/>", "not_image", "XML/SVG"),
        (b"%PDF-1.4\n", "not_image", "PDF"),
        (b"just some notes\n", "not_image", "plain text"),
        (bytes(range(256)) * 2, "unsupported", "cannot identify"),
    ],
)
def test_sniffed_reasons(data, kind, words):
    with pytest.raises(ImageReadError) as err:
        open_image(data, name="x.jpg")
    assert err.value.kind == kind and words in err.value.reason


def test_truncated_png_raises():
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    with pytest.raises(ImageReadError) as err:
        open_image(buf.getvalue()[:-300])
    assert err.value.kind in ("truncated", "corrupt")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with one tiny IDAT: a decompression bomb's shape."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def test_pixel_cap_refuses_bombs_quickly():
    assert MAX_IMAGE_PIXELS < Image.MAX_IMAGE_PIXELS
    start = time.perf_counter()
    with pytest.raises(ImageReadError) as err:
        open_image(_png_header_only(20_000, 20_000), name="bomb.png")  # 400 MP; 1.2 GB if decoded
    assert time.perf_counter() - start < 1.0
    # Pillow itself refuses this one while reading the header (over twice its limit)
    assert err.value.kind == "too_large" and "400000000" in err.value.reason
    # just above our cap but below Pillow's own limit: still refused by us
    with pytest.raises(ImageReadError, match="limit 40,000,000"):
        open_image(_png_header_only(8001, 5000))
    with pytest.raises(ImageReadError, match="too large"):
        open_image(jpeg_bytes(1), max_pixels=100)
    assert images.MAX_IMAGE_PIXELS == MAX_IMAGE_PIXELS  # the module constant is not changed by a call


def test_bad_channels_and_unsupported_mode():
    with pytest.raises(CnnlabError, match="channels must be 1 or 3"):
        to_array(Image.new("RGB", (2, 2)), 4)
    with pytest.raises(ImageReadError, match="unsupported image mode 'LAB'") as err:
        to_array(Image.new("LAB", (2, 2)), 3)
    assert err.value.kind == "unsupported"


def test_missing_file_is_a_cnnlab_error(tmp_path):
    with pytest.raises(CnnlabError, match="cannot open the file"):
        load_image(tmp_path / "nope.png", 3)


def test_open_image_keeps_format_and_is_detached(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes(2))
    img = open_image(path)
    path.unlink()  # the image must not depend on the file any more
    assert img.format == "JPEG" and img.size == (64, 48)
    assert to_array(img, 1).shape == (48, 64, 1)


def _bytes_image(mode: str, arr: np.ndarray) -> Image.Image:
    return Image.frombytes(mode, (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr).tobytes())


def test_less_common_modes():
    rng = np.random.default_rng(5)
    v16 = rng.integers(0, 65536, (3, 4), dtype=np.uint16)
    for mode, dtype in (("I;16L", "<u2"), ("I;16N", "=u2")):
        got = to_array(_bytes_image(mode, v16.astype(dtype)), 1)
        np.testing.assert_allclose(got[..., 0], v16 / 65535, atol=1e-6)
    rgbx = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    np.testing.assert_allclose(to_array(_bytes_image("RGBX", rgbx), 3), rgbx[..., :3] / 255, atol=1e-6)
    # premultiplied alpha: over white, the stored (already multiplied) colour plus (1 - alpha)
    alpha = rng.integers(1, 256, (3, 4, 1), dtype=np.uint8)
    colour = (rng.integers(0, 256, (3, 4, 3)) * alpha // 255).astype(np.uint8)
    got = to_array(_bytes_image("RGBa", np.concatenate([colour, alpha], axis=2)), 3)
    np.testing.assert_allclose(got, colour / 255 + (1 - alpha / 255), atol=1.5 / 255)
    # YCbCr and HSV are defined by their conversion to RGB
    for mode in ("YCbCr", "HSV"):
        img = _bytes_image(mode, rng.integers(0, 256, (3, 4, 3), dtype=np.uint8))
        np.testing.assert_allclose(to_array(img, 3), np.asarray(img.convert("RGB")) / 255, atol=1e-6)


def test_multi_frame_gif_gives_the_first_frame(tmp_path):
    frames = [Image.new("L", (4, 3), v) for v in (40, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    got = load_image(tmp_path / "a.gif", 1)
    assert got.shape == (3, 4, 1) and np.allclose(got, 40 / 255, atol=1e-6)
