"""PNG renderings of a prediction: the input for display, the mask, the probability map and the overlay.

Browsers cannot show TIFF or 16-bit images, so everything the page shows is an 8-bit PNG made here.
The overlay colours are also handed to the page's script, so the canvas and the PNG look the same.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np

#: Amber reads well on grayscale ultrasound and is distinguishable with the common colour-vision deficiencies.
OVERLAY_RGB = (255, 176, 0)
OVERLAY_HEX = "#{:02x}{:02x}{:02x}".format(*OVERLAY_RGB)
OVERLAY_OPACITY = 0.4
OUTLINE_PX = 2


def to_uint8(unit: np.ndarray) -> np.ndarray:
    """A [0, 1] float map as 8-bit grey levels, rounded to nearest."""
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """8-bit grayscale (H x W) or RGB (H x W x 3) array -> PNG file bytes."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # OpenCV writes BGR
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"PNG encoding failed for an array of shape {image.shape}")
    return encoded.tobytes()


def png_base64(image: np.ndarray) -> str:
    return base64.b64encode(png_bytes(image)).decode("ascii")


def mask_image(mask: np.ndarray) -> np.ndarray:
    """0/1 mask -> 0/255 8-bit image, the form of `mask_png`."""
    return (mask > 0).astype(np.uint8) * 255


def overlay_image(
    gray: np.ndarray, mask: np.ndarray, contours: list[list[list[int]]], opacity: float = OVERLAY_OPACITY
) -> np.ndarray:
    """The input in grey with the mask filled at `opacity` and its outer contours drawn opaque."""
    base = np.repeat(to_uint8(gray)[..., None], 3, axis=2)
    inside = mask > 0
    colour = np.asarray(OVERLAY_RGB, np.float32)
    base[inside] = np.rint((1.0 - opacity) * base[inside] + opacity * colour).astype(np.uint8)
    polylines = [np.asarray(c, np.int32).reshape(-1, 1, 2) for c in contours]
    cv2.drawContours(base, polylines, -1, OVERLAY_RGB, OUTLINE_PX)
    return base
