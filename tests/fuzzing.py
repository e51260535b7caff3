"""Hypothesis strategies for fuzzing: valid images of every accepted kind, damaged a few times, and raw bytes.

Shared by the decoder fuzz test (tests/model/decode/test_fuzz_decoder.py) and the /predict one
(tests/app/test_fuzz_predict.py); the structure-aware strategies (tests/fuzzing_structures.py) damage their
files with `damage` too.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import phantom
from tests.hostile import multipage_tiff, pil_encode, png_header_only, tiff_encode, tiff_header_only

#: Small cap, so that a mutated header declaring a large but legal size costs little to decode.
FUZZ_MAX_PIXELS = 1_000_000

GRAY = phantom(24, 32, seed=11)
SEEDS = [
    tiff_encode(GRAY),
    tiff_encode(GRAY.astype(np.uint16) * 257),
    tiff_encode((GRAY / 255.0).astype(np.float32)),
    tiff_encode(np.stack([GRAY] * 3, axis=-1)),
    tiff_encode(GRAY, compression="zlib"),
    pil_encode(Image.fromarray(GRAY > 100).convert("1"), "TIFF"),
    multipage_tiff(2, 24, 32),
    pil_encode(Image.fromarray(GRAY), "PNG"),
    pil_encode(Image.fromarray(GRAY).convert("P"), "PNG"),
    pil_encode(Image.fromarray(np.dstack([GRAY] * 4)), "PNG"),
    pil_encode(Image.fromarray(GRAY.astype(np.uint16) * 257), "PNG"),
    pil_encode(Image.fromarray(GRAY), "JPEG"),
    pil_encode(Image.fromarray(GRAY).convert("CMYK"), "JPEG"),
    pil_encode(Image.fromarray(GRAY), "JPEG", progressive=True),
    pil_encode(Image.fromarray(GRAY), "BMP"),
    png_header_only(5000, 5000),
    tiff_header_only(300, 200),
]


def damage(draw: st.DrawFn, data: bytes, max_actions: int = 4) -> bytes:
    """`data` damaged up to `max_actions` times: truncated, overwritten, bytes inserted or deleted, or its head
    spliced on another seed's body (or left intact)."""
    data = bytearray(data)
    for _ in range(draw(st.integers(0, max_actions))):
        position = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["truncate", "overwrite", "insert", "delete", "splice"]))
        if action == "truncate":
            del data[position:]
        elif action == "overwrite":
            patch = draw(st.binary(min_size=1, max_size=8))
            data[position : position + len(patch)] = patch
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 64))]
        else:  # the head of one format on the body of another
            other = draw(st.sampled_from(SEEDS))
            data = data[:position] + bytearray(other[position:])
    return bytes(data)


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid image of one accepted kind, then damaged a few times (or left intact)."""
    return damage(draw, draw(st.sampled_from(SEEDS)))


#: What the fuzz tests feed in: mostly damaged real images (they reach deep into the decoders), some noise.
files = st.one_of(mutated_images(), st.binary(max_size=2048))
