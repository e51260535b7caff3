"""Fuzzing the decoder with hypothesis, bounded by an example count for CI (no wall-clock deadline: the
shared machine's speed varies; the run takes seconds, docs/reliability.md).

Property: `decode_image` returns a finite float32 H x W image in [0, 1] within the pixel cap, or raises an
ImageError with a 4xx status and a code; never any other exception.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, given, settings

from model.preprocessing import ImageError, decode_image
from tests.fuzzing import FUZZ_MAX_PIXELS, files


@settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=files)
def test_decoder_returns_an_image_or_an_image_error(data: bytes):
    try:
        gray = decode_image(data, max_pixels=FUZZ_MAX_PIXELS)
    except ImageError as exc:
        event(f"refused: {exc.code}")
        assert exc.status in (400, 413, 415) and exc.code and exc.message
        return
    event("decoded")
    assert gray.dtype == np.float32 and gray.ndim == 2 and 0 < gray.size <= FUZZ_MAX_PIXELS
    assert np.isfinite(gray).all() and gray.min() >= 0.0 and gray.max() <= 1.0
