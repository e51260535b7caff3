"""Every accepted file type, one frame or all of them: the one entry point for decoding uploads and files.

Images (TIFF, PNG, JPEG, BMP) go through model.preprocessing as before; DICOM (model/dicom.py) and MP4/AVI
clips (model/video.py) are recognised by their magic bytes, never by a filename. `decode_first` is what a
single-frame request gets (the first page of a multi-page TIFF, the first frame of a DICOM or clip);
`decode_all` is a whole cine loop, refused from its header when over the frame limits (model/cine.py).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from model.cine import check_frame_count
from model.dicom import dicom_frames, is_dicom
from model.preprocessing import (
    ImageError,
    UnreadableImageError,
    UnsupportedImageError,
    decode_image,
    iter_frames,
)
from model.video import is_video, video_frames

ACCEPTED = "TIFF, PNG, JPEG, BMP, DICOM, MP4, AVI"


def _named_formats(exc: UnsupportedImageError) -> UnsupportedImageError:
    """model.preprocessing names only the image formats; a refused file should hear all accepted ones."""
    if type(exc) is UnsupportedImageError and "accepted:" in exc.message:
        return UnsupportedImageError(exc.message.split("(accepted:")[0] + f"(accepted: {ACCEPTED})")
    return exc


def decode_first(data: bytes, *, max_pixels: int) -> np.ndarray:
    """The first (or only) frame of any accepted file, as float32 grayscale in [0, 1]."""
    if is_dicom(data):
        return dicom_frames(data, max_pixels=max_pixels)[0]
    if is_video(data):
        return video_frames(data, max_pixels=max_pixels)[0]
    try:
        return decode_image(data, max_pixels=max_pixels)
    except UnsupportedImageError as exc:
        raise _named_formats(exc) from None


def _image_frames(data: bytes, max_pixels: int, max_frames: int) -> list[np.ndarray]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            count, pixels = getattr(image, "n_frames", 1), image.width * image.height
    except Exception:  # not an image Pillow knows: decode_first gives the precise error
        return [decode_first(data, max_pixels=max_pixels)]
    check_frame_count(count, max_frames, pixels, max_pixels)
    try:
        frames = list(iter_frames(data, max_pixels=max_pixels))
    except UnsupportedImageError as exc:
        raise _named_formats(exc) from None
    except UnreadableImageError:
        # Pages Pillow cannot read (e.g. 16-bit RGB TIFF) have a tifffile fallback, page by page.
        frames = [decode_image(data, max_pixels=max_pixels, frame=k) for k in range(count)]
    return frames


def decode_all(data: bytes, *, max_pixels: int, max_frames: int) -> list[np.ndarray]:
    """Every frame of any accepted file in file order; a single-frame file gives a list of one."""
    if is_dicom(data):
        return dicom_frames(data, max_pixels=max_pixels, max_frames=max_frames)
    if is_video(data):
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
