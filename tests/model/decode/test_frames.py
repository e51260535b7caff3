"""Decoding every accepted file type, one frame or a loop: DICOM (pydicom-written), multi-page TIFF, clips."""

import numpy as np
import pytest

from app.errors import status_of
from model.decode.frames import decode_all, decode_first, read_frames
from model.errors import (
    ImageError,
    TooManyFramesError,
    UnreadableImageError,
    UnsupportedImageError,
    UnsupportedTransferSyntaxError,
)
from tests.media import (
    compressed_dicom_bytes,
    dicom_bytes,
    jpeg_baseline_dicom_bytes,
    loop,
    multipage_tiff_bytes,
    video_bytes,
)

BIG = 10**7
FRAMES = loop(4)


def grey_levels(frames: list[np.ndarray]) -> np.ndarray:
    return np.stack(frames) * 255.0


def test_single_frame_dicom_decodes_exactly():
    (frame,) = decode_all(dicom_bytes(FRAMES[0]), max_pixels=BIG, max_frames=10)
    np.testing.assert_array_equal(frame * 255.0, FRAMES[0])
    np.testing.assert_array_equal(decode_first(dicom_bytes(FRAMES[0]), max_pixels=BIG), frame)


def test_multi_frame_dicom_gives_every_frame_in_order():
    data = dicom_bytes(FRAMES)
    np.testing.assert_array_equal(grey_levels(decode_all(data, max_pixels=BIG, max_frames=10)), FRAMES)
    np.testing.assert_array_equal(decode_first(data, max_pixels=BIG) * 255.0, FRAMES[0])


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL"])
def test_colour_dicom_becomes_luminance(photometric):
    rgb = np.stack([FRAMES] * 3, axis=-1)  # grey pictures stored in colour, as scanners often do
    frames = decode_all(dicom_bytes(rgb, photometric), max_pixels=BIG, max_frames=10)
    np.testing.assert_allclose(grey_levels(frames), FRAMES, atol=1.01)  # YBR round trip: +-1 level


def test_twelve_bit_and_monochrome1_dicom_use_their_own_range():
    twelve = FRAMES[0].astype(np.uint16) * 16  # 0..4080 of 4095
    frame = decode_first(dicom_bytes(twelve, bits_stored=12), max_pixels=BIG)
    np.testing.assert_allclose(frame * 4095.0, twelve, atol=1e-2)
    inverted = decode_first(dicom_bytes(FRAMES[0], "MONOCHROME1"), max_pixels=BIG)
    np.testing.assert_allclose(inverted, 1.0 - FRAMES[0] / 255.0, atol=1e-6)


def test_jpeg_baseline_dicom_is_decoded():
    frame = decode_first(jpeg_baseline_dicom_bytes(FRAMES[0]), max_pixels=BIG)
    assert frame.shape == FRAMES[0].shape and np.abs(frame * 255.0 - FRAMES[0]).mean() < 4


def test_undecodable_compressed_dicom_is_a_clear_415():
    with pytest.raises(UnsupportedTransferSyntaxError) as caught:
        decode_first(compressed_dicom_bytes(), max_pixels=BIG)
    assert status_of(caught.value.code) == 415 and caught.value.code == "unsupported_transfer_syntax"
    assert "JPEG Lossless" in caught.value.message and "1.2.840.10008.1.2.4.70" in caught.value.message


def test_damaged_dicom_is_unreadable_not_a_crash():
    data = dicom_bytes(FRAMES)
    with pytest.raises(ImageError) as caught:
        decode_all(data[: len(data) // 2], max_pixels=BIG, max_frames=10)
    assert status_of(caught.value.code) in (400, 415)
    with pytest.raises(UnsupportedImageError, match="no Pixel Data"):
        decode_first(b"\0" * 128 + b"DICM" + b"junk" * 10, max_pixels=BIG)


def test_dicom_limits_are_checked_from_the_header():
    with pytest.raises(TooManyFramesError, match="4 frames; the limit is 3"):
        decode_all(dicom_bytes(FRAMES), max_pixels=BIG, max_frames=3)
    with pytest.raises(ImageError) as caught:
        decode_first(dicom_bytes(FRAMES), max_pixels=100)
    assert caught.value.code == "image_too_large"


def test_multipage_tiff_gives_every_page():
    frames = decode_all(multipage_tiff_bytes(FRAMES), max_pixels=BIG, max_frames=10)
    np.testing.assert_array_equal(grey_levels(frames), FRAMES)
    with pytest.raises(TooManyFramesError):
        decode_all(multipage_tiff_bytes(FRAMES), max_pixels=BIG, max_frames=3)
    with pytest.raises(TooManyFramesError, match="pixels in all"):
        decode_all(multipage_tiff_bytes(loop(5)), max_pixels=120 * 160, max_frames=10)


@pytest.mark.parametrize(("suffix", "fourcc"), [(".avi", "MJPG"), (".mp4", "mp4v")])
def test_clips_decode_in_memory(tmp_path, suffix, fourcc):
    data = video_bytes(FRAMES, tmp_path, suffix, fourcc)
    frames = decode_all(data, max_pixels=BIG, max_frames=10)
    assert len(frames) == 4
    assert np.abs(grey_levels(frames) - FRAMES).mean() < 6  # lossy codecs
    np.testing.assert_array_equal(decode_first(data, max_pixels=BIG), frames[0])
    with pytest.raises(TooManyFramesError):
        decode_all(data, max_pixels=BIG, max_frames=3)


def test_broken_clip_and_unknown_format_are_clear_errors():
    with pytest.raises(UnreadableImageError, match="video could not be opened"):
        decode_first(b"RIFF\0\0\0\0AVI " + b"junk" * 20, max_pixels=BIG)
    with pytest.raises(UnsupportedImageError, match="DICOM, MP4, AVI"):
        decode_first(b"GIF89a" + b"\0" * 100, max_pixels=BIG)


def test_read_frames_names_the_file(tmp_path):
    bad = tmp_path / "scan.dcm"
    bad.write_bytes(compressed_dicom_bytes())
    with pytest.raises(UnsupportedTransferSyntaxError, match=r"scan\.dcm: DICOM transfer syntax"):
        read_frames(bad, max_pixels=BIG, max_frames=10)
