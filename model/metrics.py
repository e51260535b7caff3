"""Kaggle's per-image Dice, the one quality figure this project reports.

Dice = 2|X∩Y| / (|X| + |Y|) per image, defined as 1 when both masks are empty; the score of a set is the
mean over its images. Pixel accuracy is never reported: a nerve covers so small a part of a frame
that an empty prediction already scores a near-perfect accuracy.
"""

from __future__ import annotations

import numpy as np


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Per-image Dice of two binary masks (non-zero = nerve); 1.0 when both are empty."""
    p = np.asarray(pred) > 0
    t = np.asarray(truth) > 0
    if p.shape != t.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {t.shape}")
    total = int(p.sum()) + int(t.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, t).sum()) / total
