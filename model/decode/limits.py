"""The pixel limit every decoder checks from a file's header, before any pixel is decoded."""

from __future__ import annotations

from model.errors import EmptyImageError, ImageTooLargeError

#: 4096 x 4096: the service's NERVE_MAX_PIXELS and the folder CLI's --max-pixels default. Why this figure
#: (the memory one request holds per pixel): docs/api.md, "Configuration".
DEFAULT_MAX_PIXELS = 4096 * 4096


def check_size(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise EmptyImageError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
