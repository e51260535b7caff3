"""Every accepted file type, one frame or all of them: the one entry point for decoding uploads and files.

The format is recognised by its magic bytes (model/decode/formats.py), never by a filename, and the file goes
to that format's decoder: images.py (TIFF, PNG, JPEG, BMP), dicom.py or video.py (MP4/AVI clips); a file of
no known signature goes to Pillow, whose refusal names every accepted format. `decode_first` is what a
single-frame request gets (the first page of a multi-page TIFF, the first frame of a DICOM or clip);
`decode_all` is a whole cine loop, refused from its header when over the frame limits (model/cine.py).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from model.cine import check_frame_count
from model.decode.dicom import dicom_frames
from model.decode.formats import ACCEPTED, sniff
from model.decode.images import decode_image, iter_frames
from model.decode.video import video_frames
from model.errors import ImageError, UnreadableImageError


def _decoder(data: bytes) -> str:
    found = sniff(data)
    return found.decoder if found else "images"


def decode_first(data: bytes, *, max_pixels: int) -> np.ndarray:
    """The first (or only) frame of any accepted file, as float32 grayscale in [0, 1]."""
    decoder = _decoder(data)
    if decoder == "dicom":
        return dicom_frames(data, max_pixels=max_pixels)[0]
    if decoder == "video":
        return video_frames(data, max_pixels=max_pixels)[0]
    return decode_image(data, max_pixels=max_pixels, accepted=ACCEPTED)


def _image_frames(data: bytes, max_pixels: int, max_frames: int) -> list[np.ndarray]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            count, pixels = getattr(image, "n_frames", 1), image.width * image.height
    except Exception:  # not an image Pillow knows: decode_first gives the precise error
        return [decode_first(data, max_pixels=max_pixels)]
    check_frame_count(count, max_frames, pixels, max_pixels)
    try:
        return list(iter_frames(data, max_pixels=max_pixels, accepted=ACCEPTED))
    except UnreadableImageError:
        # Pages Pillow cannot read (e.g. 16-bit RGB TIFF) have a tifffile fallback, page by page.
        return [decode_image(data, max_pixels=max_pixels, frame=k, accepted=ACCEPTED) for k in range(count)]


def decode_all(data: bytes, *, max_pixels: int, max_frames: int) -> list[np.ndarray]:
    """Every frame of any accepted file in file order; a single-frame file gives a list of one."""
    decoder = _decoder(data)
    if decoder == "dicom":
        return dicom_frames(data, max_pixels=max_pixels, max_frames=max_frames)
    if decoder == "video":
        return video_frames(data, max_pixels=max_pixels, max_frames=max_frames)
    return _image_frames(data, max_pixels, max_frames)


def read_frames(path: Path, *, max_pixels: int, max_frames: int | None) -> list[np.ndarray]:
    """Every frame of a file on disk, or only its first when `max_frames` is None; errors name the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableImageError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        if max_frames is None:
            return [decode_first(data, max_pixels=max_pixels)]
        return decode_all(data, max_pixels=max_pixels, max_frames=max_frames)
    except ImageError as exc:
        raise exc.naming(path) from None
