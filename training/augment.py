"""Training-time augmentation of whole batches with OpenCV and NumPy.

Geometry (horizontal flip, rotation, shift, zoom) applies one affine warp to the image and its mask together;
the mask is re-binarised after interpolation. Intensity (brightness, contrast, gamma) imitates gain and
dynamic-range settings that differ between scanners and operators, and touches the image only. The ranges are
the recipe's (`[augmentation]` in training/recipes/), so the card and metadata quote what was applied.

It runs outside the network graph on purpose: the same code feeds Keras on any backend (TensorFlow on a
CPU, JAX or PyTorch on a GPU), and a batch's augmentation depends only on a NumPy generator seeded with
(seed, epoch, batch), so a run is reproducible whatever the backend or the order batches are prepared in.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """The ranges random augmentation draws from; no defaults here, the recipe gives every value."""

    hflip_probability: float
    max_rotation_deg: float
    max_shift: float  # fraction of the width (across) and of the height (down)
    max_zoom: float  # scale drawn in 1 +- max_zoom
    brightness: float  # added on the [0, 1] scale, drawn in +- brightness
    contrast: tuple[float, float]  # factor about the image mean
    gamma: tuple[float, float]  # exponent, drawn log-uniformly

    def __post_init__(self) -> None:
        if not 0 <= self.hflip_probability <= 1:
            raise ValueError(f"hflip_probability {self.hflip_probability} is not in [0, 1]")
        for name in ("max_rotation_deg", "max_shift", "brightness"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} {getattr(self, name)} is negative")
        if not 0 <= self.max_zoom < 1:
            raise ValueError(f"max_zoom {self.max_zoom} is not in [0, 1)")
        for name in ("contrast", "gamma"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} {[low, high]} is not a range [low, high] of positive factors")

    def to_dict(self) -> dict:
        return asdict(self)


def affine_matrix(rng: np.random.Generator, height: int, width: int, ranges: Augmentation) -> np.ndarray:
    """A random rotation + zoom about the centre, then a shift, as OpenCV's 2x3 matrix."""
    angle = rng.uniform(-ranges.max_rotation_deg, ranges.max_rotation_deg)
    scale = rng.uniform(1 - ranges.max_zoom, 1 + ranges.max_zoom)
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, scale)
    shift = ranges.max_shift
    matrix[:, 2] += (rng.uniform(-shift, shift) * width, rng.uniform(-shift, shift) * height)
    return matrix


def jitter_intensity(image: np.ndarray, rng: np.random.Generator, ranges: Augmentation) -> np.ndarray:
    """Brightness, contrast about the image mean, then gamma, on a [0, 1] image."""
    brightness = rng.uniform(-ranges.brightness, ranges.brightness)
    contrast = rng.uniform(*ranges.contrast)
    gamma = math.exp(rng.uniform(math.log(ranges.gamma[0]), math.log(ranges.gamma[1])))
    mean = float(image.mean())
    return np.clip((image - mean) * contrast + mean + brightness, 0.0, 1.0) ** np.float32(gamma)


def augment_batch(
    images: np.ndarray, masks: np.ndarray, rng: np.random.Generator, ranges: Augmentation
) -> tuple[np.ndarray, np.ndarray]:
    """(N, h, w) float32 images in [0, 1] and 0/1 masks -> augmented copies of both."""
    out_images = np.empty_like(images, dtype=np.float32)
    out_masks = np.empty_like(masks, dtype=np.float32)
    height, width = images.shape[1:3]
    for i in range(len(images)):
        matrix = affine_matrix(rng, height, width, ranges)
        warp = {"dsize": (width, height), "flags": cv2.INTER_LINEAR, "borderMode": cv2.BORDER_REFLECT_101}
        image = cv2.warpAffine(np.asarray(images[i], np.float32), matrix, **warp)
        mask = cv2.warpAffine(np.asarray(masks[i], np.float32), matrix, **warp) >= 0.5
        if rng.random() < ranges.hflip_probability:
            image, mask = image[:, ::-1], mask[:, ::-1]
        out_images[i] = jitter_intensity(image, rng, ranges)
        out_masks[i] = mask
    return out_images, out_masks
