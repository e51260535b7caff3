"""What one decoded image may cost, checked from a file's header before any pixel is decoded."""

from __future__ import annotations

from model.errors import EmptyImageError, ImageTooLargeError

#: 4096 x 4096: the service's NERVE_MAX_PIXELS and the folder CLI's --max-pixels default. Why this figure
#: (the memory one request holds per pixel): docs/api.md, "Configuration".
DEFAULT_MAX_PIXELS = 4096 * 4096
#: Longest side accepted, whatever the pixel limit: libpng cannot write a row over 1,000,000 pixels (the mask
#: and overlay PNGs would fail after all the work), JPEG stops at 65,535, and no scanner frame comes near it.
MAX_SIDE = 16384


def check_size(width: int, height: int, max_pixels: int) -> None:
    """Refuse an image with no pixels, a side over MAX_SIDE, or more than `max_pixels` pixels."""
    if width < 1 or height < 1:
        raise EmptyImageError(f"image has no pixels ({width}x{height})")
    if max(width, height) > MAX_SIDE:
        raise ImageTooLargeError(f"image is {width}x{height}; the limit is {MAX_SIDE} pixels per side")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
