"""Fuzzing the decoder with hypothesis, bounded by an example count for CI (no wall-clock deadline: the
shared machine's speed varies; the run takes seconds, docs/reliability.md).

Property: `decode_image` returns a finite float32 H x W image in [0, 1] within the pixel cap, or raises an
ImageError with a code that app/errors.py maps to a 4xx status; never any other exception.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, example, given, settings

from app.errors import status_of
from model.decode.images import decode_image
from model.errors import ImageError
from tests.fuzzing import FUZZ_MAX_PIXELS, files

#: Found by this test in CI: a TIFF whose StripOffsets tag is a RATIONAL made Pillow's loader raise TypeError,
#: which escaped as a 500 until the loader turned every Pillow decoding failure into an ImageError.
RATIONAL_ROWS_PER_STRIP = bytes.fromhex(
    "49492a00080000000e000001040001000000200000000101040001000000180000000201030001000000080000000301"
    "030001000000010000000601030001000000010000000e01020014000000b60000001101050001000000da0000001b01"
    "050001000000e2000000280103000100000001000000310102000c000000ea000000000000007b227368617065223a20"
    "5b32342c2033325d7d000000000000000000000000000000000001000000010000000100000001000000746966666669"
    "6c652e70790000000000000000000000283e59121ca516242d47314c551e66628c91"
)


@settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=files)
@example(data=RATIONAL_ROWS_PER_STRIP)
def test_decoder_returns_an_image_or_an_image_error(data: bytes):
    try:
        gray = decode_image(data, max_pixels=FUZZ_MAX_PIXELS)
    except ImageError as exc:
        event(f"refused: {exc.code}")
        assert status_of(exc.code) in (400, 413, 415) and exc.code and exc.message
        return
    event("decoded")
    assert gray.dtype == np.float32 and gray.ndim == 2 and 0 < gray.size <= FUZZ_MAX_PIXELS
    assert np.isfinite(gray).all() and gray.min() >= 0.0 and gray.max() <= 1.0
