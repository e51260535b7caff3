"""The decode stage in helper processes: the same frames as decoding in-process, errors with their codes, and
hard bounds on time and memory that stop only the helper, after which the pool goes on decoding."""

from __future__ import annotations

import numpy as np
import pytest

from model.decode.frames import decode_all, decode_first
from model.decode.isolated import DecodePool, DecodeTimeout
from model.errors import ImageTooLargeError, TooManyFramesError, UnsupportedImageError
from tests.app.conftest import pil_bytes, tiff_bytes
from tests.conftest import phantom
from tests.hostile import apng, blank_png, multipage_tiff
from tests.media import dicom_bytes, loop

FRAME = phantom(120, 160)
BIG = 4096  # a real, maximal PNG: decoding it takes far longer than a millisecond and needs 64 MiB as float32


@pytest.fixture(scope="module")
def pool() -> DecodePool:
    return DecodePool()


@pytest.mark.parametrize(
    "data",
    [tiff_bytes(FRAME), pil_bytes(FRAME, "PNG"), pil_bytes(FRAME, "JPEG"), dicom_bytes(FRAME)],
    ids=["tiff", "png", "jpeg", "dicom"],
)
def test_a_frame_is_bit_for_bit_what_in_process_decoding_gives(pool, data):
    [isolated] = pool.decode(data, max_pixels=10**6, max_frames=None, timeout=30)
    assert isolated.dtype == np.float32 and isolated.flags.writeable
    np.testing.assert_array_equal(isolated, decode_first(data, max_pixels=10**6))


@pytest.mark.parametrize("data", [multipage_tiff(4), dicom_bytes(loop(3)), apng(3)], ids=["tiff", "dicom", "apng"])
def test_a_loop_is_bit_for_bit_what_in_process_decoding_gives(pool, data):
    isolated = pool.decode(data, max_pixels=10**6, max_frames=10, timeout=30)
    expected = decode_all(data, max_pixels=10**6, max_frames=10)
    assert len(isolated) == len(expected) > 1
    for got, want in zip(isolated, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_refusals_keep_their_code_and_the_helper(pool):
    with pytest.raises(UnsupportedImageError):
        pool.decode(b"not an image at all", max_pixels=10**6, max_frames=None, timeout=30)
    with pytest.raises(TooManyFramesError):
        pool.decode(multipage_tiff(4), max_pixels=10**6, max_frames=2, timeout=30)
    assert len(pool._idle) == 1, "a refusal must not cost a helper"


def test_past_its_time_the_helper_is_stopped_and_the_pool_goes_on(pool):
    big = blank_png(BIG, BIG)
    helper = pool._borrow()
    pool._give_back(helper)
    with pytest.raises(DecodeTimeout):
        pool.decode(big, max_pixels=BIG * BIG, max_frames=None, timeout=0.001)
    assert not helper.process.is_alive(), "the helper that ran out of time still runs"
    [frame] = pool.decode(big, max_pixels=BIG * BIG, max_frames=None, timeout=60)
    assert frame.shape == (BIG, BIG)


def test_a_decode_over_the_memory_cap_is_a_too_large_image():
    small = DecodePool(memory_bytes=32 * 1024 * 1024)
    with pytest.raises(ImageTooLargeError, match="more memory"):
        small.decode(blank_png(BIG, BIG), max_pixels=BIG * BIG, max_frames=None, timeout=60)
    [frame] = small.decode(tiff_bytes(FRAME), max_pixels=10**6, max_frames=None, timeout=60)
    assert frame.shape == FRAME.shape
