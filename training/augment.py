"""Training-time augmentation on whole batches, inside the tf.data pipeline.

Geometry (horizontal flip; rotation <= 5 deg, shift and zoom <= 10%) uses Keras' own random layers on the
image and mask stacked as two channels, so both move together; the mask is re-binarised after
interpolation. Intensity (brightness, contrast, gamma) imitates gain and dynamic-range settings that differ
between scanners and operators, and touches the image only.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


def geometric_augmenter(seed: int) -> keras.Sequential:
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(5 / 360, fill_mode="reflect", seed=seed + 1),
            layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 2),
            layers.RandomZoom(0.1, fill_mode="reflect", seed=seed + 3),
        ],
        name="geometric_augmentation",
    )


def intensity_jitter(images: tf.Tensor, seed: int) -> tf.Tensor:
    """Per-image brightness +-0.1, contrast x0.8-1.2, gamma 0.8-1.25 on [0, 1] images (N, h, w, 1)."""
    n = tf.shape(images)[0]
    shape = tf.stack([n, 1, 1, 1])
    brightness = tf.random.uniform(shape, -0.1, 0.1, seed=seed)
    contrast = tf.random.uniform(shape, 0.8, 1.2, seed=seed + 1)
    gamma = tf.exp(tf.random.uniform(shape, tf.math.log(0.8), tf.math.log(1.25), seed=seed + 2))
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    out = (images - mean) * contrast + mean + brightness
    return tf.clip_by_value(out, 0.0, 1.0) ** gamma


class Augmenter:
    """Callable for tf.data: (images, masks) in [0, 1] -> augmented (images, masks)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.geometric = geometric_augmenter(seed)

    def __call__(self, images: tf.Tensor, masks: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        stacked = self.geometric(tf.concat([images, masks], axis=-1), training=True)
        images, masks = stacked[..., :1], stacked[..., 1:]
        masks = tf.cast(masks >= 0.5, tf.float32)
        return intensity_jitter(images, self.seed), masks
