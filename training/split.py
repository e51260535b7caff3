"""Subject-wise K-fold split.

Frames of one subject come from one scan and are near-duplicates, so a frame-wise split would score a
model on copies of its training data. Every subject lands in exactly one fold; folds are balanced by
frame count (largest subjects first, each to the currently smallest fold), with a seeded shuffle among
subjects of equal size so the split is reproducible.
"""

from __future__ import annotations

import numpy as np


def subject_folds(subjects: np.ndarray, k: int, seed: int = 0) -> list[list[int]]:
    """Return k sorted lists of subject ids, disjoint and covering every subject."""
    ids, counts = np.unique(subjects, return_counts=True)
    if k < 2:
        raise ValueError("need at least 2 folds")
    if k > len(ids):
        raise ValueError(f"{k} folds asked for but only {len(ids)} subjects")
    order = np.random.default_rng(seed).permutation(len(ids))
    order = order[np.argsort(-counts[order], kind="stable")]
    folds: list[list[int]] = [[] for _ in range(k)]
    sizes = np.zeros(k, int)
    for i in order:
        target = int(np.argmin(sizes))
        folds[target].append(int(ids[i]))
        sizes[target] += counts[i]
    return [sorted(f) for f in folds]


def fold_indices(subjects: np.ndarray, fold_subjects: list[int]) -> np.ndarray:
    """Frame indices belonging to the given subjects."""
    return np.flatnonzero(np.isin(subjects, fold_subjects))


def inner_validation_subjects(train_subjects: list[int], fraction: float, seed: int) -> list[int]:
    """Subjects held out of a fold's training part for early stopping and checkpoint choice."""
    count = max(1, round(len(train_subjects) * fraction))
    rng = np.random.default_rng(seed)
    return sorted(int(s) for s in rng.choice(sorted(train_subjects), size=count, replace=False))
