"""Training-time augmentation of whole batches with OpenCV and NumPy.

Geometry (horizontal flip; rotation <= 5 deg, shift <= 10%, zoom <= 10%) applies one affine warp to the
image and its mask together; the mask is re-binarised after interpolation. Intensity (brightness, contrast,
gamma) imitates gain and dynamic-range settings that differ between scanners and operators, and touches the
image only.

It runs outside the network graph on purpose: the same code feeds Keras on any backend (TensorFlow on a
CPU, JAX or PyTorch on a GPU), and a batch's augmentation depends only on a NumPy generator seeded with
(seed, epoch, batch), so a run is reproducible whatever the backend or the order batches are prepared in.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

MAX_ROTATION_DEG = 5.0
MAX_SHIFT = 0.1
MAX_ZOOM = 0.1


def affine_matrix(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random rotation + zoom about the centre, then a shift, as OpenCV's 2x3 matrix."""
    angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    scale = rng.uniform(1 - MAX_ZOOM, 1 + MAX_ZOOM)
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, scale)
    matrix[:, 2] += (rng.uniform(-MAX_SHIFT, MAX_SHIFT) * width, rng.uniform(-MAX_SHIFT, MAX_SHIFT) * height)
    return matrix


def jitter_intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness +-0.1, contrast x0.8-1.2 about the image mean, gamma 0.8-1.25, on a [0, 1] image."""
    brightness = rng.uniform(-0.1, 0.1)
    contrast = rng.uniform(0.8, 1.2)
    gamma = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
    mean = float(image.mean())
    return np.clip((image - mean) * contrast + mean + brightness, 0.0, 1.0) ** np.float32(gamma)


def augment_batch(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(N, h, w) float32 images in [0, 1] and 0/1 masks -> augmented copies of both."""
    out_images = np.empty_like(images, dtype=np.float32)
    out_masks = np.empty_like(masks, dtype=np.float32)
    height, width = images.shape[1:3]
    for i in range(len(images)):
        matrix = affine_matrix(rng, height, width)
        warp = {"dsize": (width, height), "flags": cv2.INTER_LINEAR, "borderMode": cv2.BORDER_REFLECT_101}
        image = cv2.warpAffine(np.asarray(images[i], np.float32), matrix, **warp)
        mask = cv2.warpAffine(np.asarray(masks[i], np.float32), matrix, **warp) >= 0.5
        if rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        out_images[i] = jitter_intensity(image, rng)
        out_masks[i] = mask
    return out_images, out_masks
