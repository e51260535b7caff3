"""Every accepted file type, one frame or all of them: the one entry point for decoding uploads and files.

The format is recognised by its magic bytes (model/decode/formats.py), never by a filename, and a file of no
accepted signature is refused before any decoder opens it (Pillow alone would walk a GIF's every frame
first). Its structure is then checked on the raw bytes (model/decode/structure.py) and the file goes to its
format's decoder: images.py (TIFF, PNG, JPEG, BMP), dicom.py or video.py (MP4/AVI clips). `decode_first` is
what a single-frame request gets (the first page of a multi-page TIFF, the first frame of a DICOM or clip);
`decode_all` is a whole cine loop, every frame charged to its budget before it is decoded (model/cine.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.cine import LoopBudget
from model.decode.dicom import dicom_frames
from model.decode.formats import ACCEPTED, Format, sniff
from model.decode.images import decode_image, iter_frames, tiff_pages
from model.decode.structure import check_structure
from model.decode.video import video_frames
from model.errors import EmptyImageError, ImageError, UnreadableImageError, UnsupportedImageError


def _format(data: bytes, max_pixels: int, max_frames: int | None) -> Format:
    """The file's accepted format, its structure checked; anything else is refused naming every format."""
    if not data:
        raise EmptyImageError("the file is empty")
    found = sniff(data)
    if found is None:
        raise UnsupportedImageError(f"not a supported image (accepted: {ACCEPTED})")
    check_structure(data, found.name, max_pixels, max_frames)
    return found


def decode_first(data: bytes, *, max_pixels: int) -> np.ndarray:
    """The first (or only) frame of any accepted file, as float32 grayscale in [0, 1]."""
    found = _format(data, max_pixels, None)
    if found.decoder == "dicom":
        return dicom_frames(data, max_pixels=max_pixels)[0]
    if found.decoder == "video":
        return video_frames(data, max_pixels=max_pixels)[0]
    return decode_image(data, max_pixels=max_pixels, accepted=ACCEPTED)


def decode_all(data: bytes, *, max_pixels: int, max_frames: int) -> list[np.ndarray]:
    """Every frame of any accepted file in file order; a single-frame file gives a list of one."""
    found = _format(data, max_pixels, max_frames)
    if found.decoder == "dicom":
        return dicom_frames(data, max_pixels=max_pixels, max_frames=max_frames)
    if found.decoder == "video":
        return video_frames(data, max_pixels=max_pixels, max_frames=max_frames)
    try:
        return list(iter_frames(data, budget=LoopBudget(max_frames, max_pixels), accepted=ACCEPTED))
    except UnreadableImageError:
        if found.name != "TIFF":
            raise
    # Pages Pillow cannot read (e.g. 16-bit RGB TIFF) have a tifffile fallback.
    return tiff_pages(data, LoopBudget(max_frames, max_pixels))


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
