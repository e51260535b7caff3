"""From the network's probability map to the answer a user sees.

The map (model resolution) is resized to the input image's own size, thresholded, and connected
components smaller than the min-area gate are removed. The gate is stored in model-input pixels and
scaled to each image's area, so a 256x186 and a 580x420 view of the same anatomy are gated alike.
`nerve_present` is true exactly when the final mask is non-empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from model.preprocessing import resize_to

if TYPE_CHECKING:
    from model.quality import Assessment


@dataclass(frozen=True)
class PostprocessConfig:
    """From the network's output to the answer: threshold and min-area are calibrated on validation folds by
    training; all of it is stored in metadata.json's `postprocessing` section."""

    threshold: float
    min_area: int  # in model-input pixels
    model_height: int
    model_width: int
    #: Flip test-time augmentation: each frame's map is averaged with its mirror's (model/segmenter.py).
    tta_hflip: bool = False

    @classmethod
    def from_metadata(cls, metadata: dict) -> PostprocessConfig:
        post = metadata["postprocessing"]
        return cls(
            threshold=float(post["threshold"]),
            min_area=int(post["min_area_px"]),
            model_height=int(metadata["input"]["height"]),
            model_width=int(metadata["input"]["width"]),
            tta_hflip="hflip" in post.get("tta", []),
        )


@dataclass
class Prediction:
    """One image's result at the image's own size."""

    mask: np.ndarray  # uint8 H x W, 0 or 1
    probability: np.ndarray  # float32 H x W, per-pixel nerve probability
    nerve_probability: float  # peak of the model-resolution probability map
    threshold: float
    #: How far the outline can be trusted (model/quality.py); None when the model has no quality estimator.
    assessment: Assessment | None = None

    @property
    def nerve_present(self) -> bool:
        return bool(self.mask.any())

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def bbox(self) -> tuple[int, int, int, int] | None:
        """[x, y, w, h] of the mask in input pixels; None when empty."""
        if not self.mask.any():
            return None
        x, y, w, h = cv2.boundingRect(self.mask)
        return int(x), int(y), int(w), int(h)

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])


def scaled_min_area(min_area: int, height: int, width: int, config: PostprocessConfig) -> float:
    """The gate in this image's pixels: model-input pixels times the area ratio."""
    return min_area * (height * width) / (config.model_height * config.model_width)


def remove_small_components(mask: np.ndarray, min_area_px: float) -> np.ndarray:
    """Drop 8-connected components with fewer than `min_area_px` pixels."""
    if min_area_px <= 0 or not mask.any():
        return mask
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = np.zeros(count, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area_px
    return keep[labels].astype(np.uint8)


def postprocess(
    probability_small: np.ndarray, height: int, width: int, config: PostprocessConfig, threshold: float | None = None
) -> Prediction:
    """Model-resolution probability map -> Prediction at height x width."""
    cut = config.threshold if threshold is None else float(threshold)
    probability = np.clip(resize_to(probability_small, height, width), 0.0, 1.0)
    mask = (probability >= cut).astype(np.uint8)
    mask = remove_small_components(mask, scaled_min_area(config.min_area, height, width, config))
    return Prediction(
        mask=mask, probability=probability, nerve_probability=float(np.max(probability_small)), threshold=cut
    )


def outer_contours(mask: np.ndarray) -> list[list[list[int]]]:
    """Outer boundary of each component as a list of [x, y] input-pixel points."""
    found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [[[int(x), int(y)] for x, y in c.reshape(-1, 2)] for c in found]
