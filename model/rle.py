"""Kaggle run-length encoding: 1-indexed pixel numbers counted down columns, then across.

Kaggle's "Ultrasound Nerve Segmentation" numbers pixels top to bottom, then left to right (column-major),
starting at 1, and writes "start length" pairs separated by spaces; an empty mask is the empty string.
"""

from __future__ import annotations

import numpy as np


def rle_encode(mask: np.ndarray) -> str:
    """Encode an H x W mask (non-zero = nerve) as a Kaggle RLE string."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    pixels = (np.asarray(mask).T.reshape(-1) > 0).astype(np.int8)
    padded = np.concatenate([[0], pixels, [0]])
    changes = np.flatnonzero(padded[1:] != padded[:-1]) + 1  # 1-indexed run starts and ends
    starts, ends = changes[0::2], changes[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends, strict=True))


def rle_decode(rle: str, height: int, width: int) -> np.ndarray:
    """Decode a Kaggle RLE string to an H x W uint8 mask of 0/1; raises ValueError on a malformed string."""
    values = rle.split()
    if len(values) % 2:
        raise ValueError("RLE must hold 'start length' pairs")
    flat = np.zeros(height * width, dtype=np.uint8)
    try:
        numbers = np.asarray(values, dtype=np.int64).reshape(-1, 2)
    except ValueError:
        raise ValueError("RLE must hold whole numbers") from None
    for start, length in numbers:
        if start < 1 or length < 1 or start - 1 + length > flat.size:
            raise ValueError(f"run {start} {length} lies outside a {height}x{width} mask")
        flat[start - 1 : start - 1 + length] = 1
    return flat.reshape(width, height).T.copy()
