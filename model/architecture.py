"""The U-Net that training fits and the app serves.

One definition, imported by both sides, so the served network is the trained one. BatchNorm follows every
convolution; the network's size and the figures it reaches are in docs/training.md and model/MODEL_CARD.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
from keras import layers


@dataclass(frozen=True)
class UNetConfig:
    """Shape of the network. Input height x width keeps roughly the 420:580 aspect of the scanner frames."""

    height: int = 96
    width: int = 128
    base_filters: int = 16
    depth: int = 4
    dropout: float = 0.1

    def __post_init__(self) -> None:
        step = 2**self.depth
        if self.height % step or self.width % step:
            raise ValueError(
                f"input {self.height}x{self.width} must be divisible by 2**depth = {step} "
                "so that every pooling step halves it exactly"
            )
        if self.base_filters < 1 or self.depth < 1:
            raise ValueError("base_filters and depth must be positive")

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_block(x, filters: int, name: str):
    """Two 3x3 conv -> BatchNorm -> ReLU; no conv bias since BatchNorm supplies the shift."""
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def build_unet(config: UNetConfig = UNetConfig()) -> keras.Model:
    """Functional U-Net: (H, W, 1) normalised grayscale -> (H, W, 1) nerve probability (sigmoid)."""
    inputs = keras.Input(shape=(config.height, config.width, 1), name="image")
    skips = []
    x = inputs
    for level in range(config.depth):
        x = _conv_block(x, config.base_filters * 2**level, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _conv_block(x, config.base_filters * 2**config.depth, "bottleneck")
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(config.depth)):
        filters = config.base_filters * 2**level
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"up{level}_transpose")(x)
        x = layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        x = _conv_block(x, filters, f"up{level}")
    # float32 head keeps the sigmoid numerically identical across backends and precisions.
    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="probability")(x)
    return keras.Model(inputs, outputs, name=f"unet_f{config.base_filters}_d{config.depth}")
