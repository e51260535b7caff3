"""Decoding any supported image (TIFF, PNG, JPEG, BMP) to grayscale [0, 1] at its own size."""

import io

import numpy as np
import pytest
import tifffile
from PIL import Image

from app.errors import status_of
from model.cine import LoopBudget
from model.decode.images import decode_image, iter_frames, read_image
from model.errors import EmptyImageError, ImageTooLargeError, UnreadableImageError, UnsupportedImageError
from tests.conftest import phantom
from tests.hostile import png_header_only
from tests.hostile import tiff_encode as tiff_bytes

GRAY = phantom(42, 58, seed=3)


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_8bit_tiff_png_bmp_are_exact():
    for fmt in ("TIFF", "PNG", "BMP"):
        out = decode_image(encode(Image.fromarray(GRAY), fmt))
        assert out.dtype == np.float32 and out.shape == GRAY.shape
        np.testing.assert_allclose(out, GRAY / 255.0, atol=1e-7)


def test_16bit_tiff_reads_like_its_8bit_original():
    wide = GRAY.astype(np.uint16) * 257
    out = decode_image(encode(Image.fromarray(wide), "TIFF"))
    np.testing.assert_allclose(out, GRAY / 255.0, atol=1e-6)


def test_16bit_png_reads_on_16bit_scale():
    wide = GRAY.astype(np.uint16) * 257
    out = decode_image(encode(Image.fromarray(wide), "PNG"))
    np.testing.assert_allclose(out, GRAY / 255.0, atol=1e-6)


def test_float_tiff_in_unit_range_kept_and_other_ranges_scaled():
    unit = (GRAY / 255.0).astype(np.float32)
    buf = io.BytesIO()
    tifffile.imwrite(buf, unit)
    np.testing.assert_allclose(decode_image(buf.getvalue()), unit, atol=1e-7)
    buf = io.BytesIO()
    tifffile.imwrite(buf, unit * 1000 - 5)
    out = decode_image(buf.getvalue())
    assert out.min() == pytest.approx(0) and out.max() == pytest.approx(1)


def test_float_tiff_spanning_float32s_whole_range_scales_without_overflow():
    """Found by the fuzzer: max - min overflowed float32 and gave NaN pixels."""
    extreme = np.array([[-3e38, 0.0], [1.0, 3e38]], np.float32)
    out = decode_image(tiff_bytes(extreme))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, [[0.0, 0.5], [0.5, 1.0]], atol=1e-6)


def test_rgb_and_palette_and_rgba_and_cmyk_become_luminance():
    rgb = Image.fromarray(np.stack([GRAY] * 3, axis=-1))
    expected = GRAY / 255.0
    np.testing.assert_allclose(decode_image(encode(rgb, "PNG")), expected, atol=1e-3)
    np.testing.assert_allclose(decode_image(encode(rgb.convert("RGBA"), "PNG")), expected, atol=1e-3)
    palette = decode_image(encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG"))
    assert palette.shape == GRAY.shape and np.corrcoef(palette.ravel(), expected.ravel())[0, 1] > 0.95
    cmyk = decode_image(encode(rgb.convert("CMYK"), "JPEG", quality=95))
    assert cmyk.shape == GRAY.shape and np.abs(cmyk - expected).mean() < 0.05


def test_jpeg_decodes_close_to_original():
    out = decode_image(encode(Image.fromarray(GRAY), "JPEG", quality=95))
    assert np.abs(out - GRAY / 255.0).mean() < 0.05


def test_one_bit_tiff():
    bits = Image.fromarray(GRAY > 128).convert("1")
    out = decode_image(encode(bits, "TIFF"))
    assert set(np.unique(out)) <= {0.0, 1.0}


def test_16bit_rgb_tiff_falls_back_to_tifffile():
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.stack([GRAY.astype(np.uint16) * 257] * 3, axis=-1), photometric="rgb")
    np.testing.assert_allclose(decode_image(buf.getvalue()), GRAY / 255.0, atol=1e-3)


def test_multipage_tiff_first_page_by_default_and_all_frames():
    pages = [Image.fromarray(GRAY), Image.fromarray(255 - GRAY)]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    np.testing.assert_allclose(decode_image(buf.getvalue()), GRAY / 255.0, atol=1e-7)
    frames = list(iter_frames(buf.getvalue(), budget=LoopBudget(10, 10**6)))
    assert len(frames) == 2
    np.testing.assert_allclose(frames[1], (255 - GRAY) / 255.0, atol=1e-7)


def test_empty_and_garbage_and_truncated():
    with pytest.raises(EmptyImageError):
        decode_image(b"")
    with pytest.raises(UnsupportedImageError):
        decode_image(b"this is a text file, not a TIFF")
    for fmt in ("PNG", "TIFF"):
        data = encode(Image.fromarray(GRAY), fmt)
        with pytest.raises(UnreadableImageError):
            decode_image(data[: len(data) // 2])


def test_unsupported_format_is_415():
    data = encode(Image.fromarray(GRAY), "GIF")
    with pytest.raises(UnsupportedImageError) as info:
        decode_image(data)
    assert status_of(info.value.code) == 415 and "GIF" in info.value.message


def test_huge_declared_dimensions_rejected_from_the_header():
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(png_header_only(100_000, 100_000), max_pixels=40_000_000)
    assert status_of(info.value.code) == 413


def test_pixel_limit_is_configurable():
    data = encode(Image.fromarray(GRAY), "PNG")
    with pytest.raises(ImageTooLargeError):
        decode_image(data, max_pixels=100)


def test_read_image_names_the_file(tmp_path):
    bad = tmp_path / "7_3.tif"
    bad.write_text("not an image")
    with pytest.raises(UnsupportedImageError, match="7_3.tif"):
        read_image(bad)
    with pytest.raises(UnreadableImageError, match="missing.tif"):
        read_image(tmp_path / "missing.tif")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_rgb_luminance_in_blocks_of_rows_equals_the_whole_image_at_once(monkeypatch, dtype):
    """Integer RGB is collapsed in blocks of rows to bound memory; the grey values must not change."""
    from model.decode import images

    rgb = np.random.default_rng(3).integers(0, np.iinfo(dtype).max, size=(97, 61, 3), dtype=dtype)
    whole = images.luminance(rgb)
    monkeypatch.setattr(images, "LUMINANCE_BLOCK_PIXELS", 61 * 5)  # 20 blocks, the last one short
    np.testing.assert_array_equal(images.luminance(rgb), whole)
    expected = (rgb.astype(np.float64) / np.iinfo(dtype).max).astype(np.float32) @ np.array(
        [0.299, 0.587, 0.114], np.float32
    )
    np.testing.assert_array_equal(whole, expected.astype(np.float32))
