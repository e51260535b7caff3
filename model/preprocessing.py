"""Model-input preparation shared by training, evaluation and serving: resize and normalise.

A decoded frame (model/decode/: float32 grayscale in [0, 1] at its own size) is resized to the network's
input size and normalised with constants stored in the model's metadata, so a frame is seen the same way at
training time and in the service.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class InputSpec:
    """What the network expects: its input size and the normalisation fitted on the training data."""

    height: int
    width: int
    mean: float
    std: float

    @classmethod
    def from_metadata(cls, metadata: dict) -> InputSpec:
        spec = metadata["input"]
        norm = spec["normalisation"]
        return cls(
            height=int(spec["height"]), width=int(spec["width"]), mean=float(norm["mean"]), std=float(norm["std"])
        )


def resize_to(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a float map; area averaging when shrinking (no aliasing), bilinear when enlarging."""
    if array.shape == (height, width):
        return array.astype(np.float32, copy=False)
    shrinking = height * width < array.shape[0] * array.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(array.astype(np.float32, copy=False), (width, height), interpolation=interpolation)


def standardise(values, spec: InputSpec):
    """(x - mean) / std with the metadata's constants; works on NumPy arrays and TF tensors alike, so the
    training pipeline (which normalises after augmenting) applies the very formula serving does."""
    return (values - np.float32(spec.mean)) / np.float32(spec.std)


def normalise(small: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Model-size [0, 1] image(s) -> normalised float32 with a trailing channel axis."""
    return standardise(small, spec)[..., None].astype(np.float32)


def to_model_input(gray: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One grayscale [0, 1] image -> (height, width, 1) normalised float32 network input."""
    return normalise(resize_to(gray, spec.height, spec.width), spec)


def to_model_batch(grays: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Several grayscale images of any sizes -> (N, height, width, 1) batch."""
    if not grays:
        return np.zeros((0, spec.height, spec.width, 1), np.float32)
    return np.stack([to_model_input(g, spec) for g in grays])
