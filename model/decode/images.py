"""TIFF, PNG, JPEG and BMP (one page or every page) to float32 grayscale in [0, 1] at the image's own size.

Whatever the container holds (8/16-bit or float samples; grayscale, RGB, palette, CMYK), the result is one
grayscale array scaled by the samples' own range, so a 16-bit export of a frame reads exactly like its 8-bit
original. Pillow decodes; tifffile reads the TIFF layouts Pillow cannot.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from model.cine import LoopBudget
from model.decode.formats import FORMATS, IMAGE_FORMATS
from model.decode.limits import DEFAULT_MAX_PIXELS, check_size
from model.errors import (
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    UnreadableImageError,
    UnsupportedImageError,
)

#: What these functions alone accept, named in their refusals; model/decode/frames.py names every format.
IMAGES_ACCEPTED = ", ".join(IMAGE_FORMATS)

# Pillow's own bomb guard stays on behind ours (the pixel limit checked from the header), for what a header
# does not say. Its warnings about damaged metadata (e.g. "Corrupt EXIF data") are noise beside the errors
# raised below: silenced once for the process, since warnings.catch_warnings() is not thread-safe.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


def to_unit_float(array: np.ndarray) -> np.ndarray:
    """Scale a decoded sample array to float32 in [0, 1] by its type's own range.

    Integers are divided by their type's maximum (8-bit by 255, 16-bit by 65535), so a 16-bit export of a
    frame reads exactly like its 8-bit original. Floats already in [0, 1] are kept; other floats are
    min-max scaled, since they carry no fixed range.
    """
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        if info.min < 0:
            array = np.clip(array.astype(np.float64), 0, None)
        return (array.astype(np.float64) / info.max).astype(np.float32)
    values = array.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise UnreadableImageError("image contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:
        return values
    if high == low:
        return np.zeros_like(values)
    # In float64: float32's range difference can overflow (e.g. -3e38 .. 3e38 spans more than its maximum).
    return ((values.astype(np.float64) - low) / (high - low)).astype(np.float32)


#: Pixels converted at once when collapsing integer RGB: bounds the transient float copies.
LUMINANCE_BLOCK_PIXELS = 1 << 20


def _rgb_luminance(rgb: np.ndarray) -> np.ndarray:
    return (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)


def luminance(array: np.ndarray) -> np.ndarray:
    """Collapse colour channels with the ITU-R 601 weights Pillow uses for 'L' conversion."""
    if array.ndim == 2:
        return array
    if array.ndim == 3 and array.shape[2] in (1, 2):  # gray or gray+alpha
        return array[..., 0]
    if array.ndim == 3 and array.shape[2] in (3, 4):  # RGB or RGBA: alpha carries no anatomy
        if not np.issubdtype(array.dtype, np.integer):  # float scaling needs the whole image's range
            return _rgb_luminance(to_unit_float(array[..., :3]))
        # Integer samples scale by their type's range alone, so blocks of rows give the same values as the
        # whole image at once, without its float64 copy (24 bytes a pixel for a maximal RGB image).
        gray = np.empty(array.shape[:2], np.float32)
        rows = max(1, LUMINANCE_BLOCK_PIXELS // array.shape[1])
        for top in range(0, array.shape[0], rows):
            gray[top : top + rows] = _rgb_luminance(to_unit_float(array[top : top + rows, :, :3]))
        return gray
    raise UnsupportedImageError(f"unsupported sample layout {array.shape}")


def _pil_frame_to_gray(frame: Image.Image) -> np.ndarray:
    mode = frame.mode
    if mode in ("L", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return to_unit_float(np.asarray(frame))
    if mode == "I":
        # 32-bit container; Pillow uses it for 16-bit PNGs, so values are read on the 16-bit scale.
        values = np.asarray(frame).astype(np.float64)
        return np.clip(values / 65535.0, 0.0, 1.0).astype(np.float32)
    if mode == "1":
        return np.asarray(frame.convert("L")).astype(np.float32) / 255.0
    if mode in ("LA", "La"):
        return np.asarray(frame.getchannel(0)).astype(np.float32) / 255.0
    # RGB, RGBA, P, PA, CMYK, YCbCr, LAB, HSV: let Pillow map to RGB, then to luminance.
    return luminance(np.asarray(frame.convert("RGB"))).astype(np.float32)


class _Refusing:
    """Turns a decoding library's exceptions into one plain refusal: Pillow and tifffile raise many types for
    damaged files (OSError, TypeError, struct.error, ...), and their text is for logs, not users. ImageError
    passes; running out of the decode stage's memory (model/decode/isolated.py) is a too-large image."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, traceback) -> bool:
        if exc is None or isinstance(exc, ImageError):
            return False
        if isinstance(exc, MemoryError):
            raise ImageTooLargeError("the image needs more memory to decode than the service allows") from None
        if not isinstance(exc, Exception):
            return False
        raise UnreadableImageError(f"{self.what} could not be decoded: it is truncated or damaged") from None


def _tifffile_gray(page) -> np.ndarray:
    shape = page.shape
    if len(shape) < 2:
        raise UnsupportedImageError(f"TIFF page has shape {shape}")
    return to_unit_float(luminance(page.asarray()))


def _decode_with_tifffile(data: bytes, max_pixels: int, frame: int) -> np.ndarray:
    """Fallback for TIFF sample formats Pillow cannot open (e.g. 16-bit RGB, multi-sample float)."""
    with _Refusing("TIFF page"), tifffile.TiffFile(io.BytesIO(data)) as tif:
        try:
            page = tif.pages[frame]  # walks the directories up to `frame` only, not the whole file
        except IndexError:
            raise UnreadableImageError(f"TIFF has no page {frame}") from None
        if len(page.shape) >= 2:
            check_size(page.shape[1], page.shape[0], max_pixels)
        return _tifffile_gray(page)


def tiff_pages(data: bytes, budget: LoopBudget) -> list[np.ndarray]:
    """Every page of a TIFF through tifffile, each charged to `budget` before it is decoded."""
    pages = []
    with _Refusing("TIFF page"), tifffile.TiffFile(io.BytesIO(data)) as tif:
        for page in tif.pages:
            if len(page.shape) >= 2:
                budget.admit(page.shape[1], page.shape[0])
            pages.append(_tifffile_gray(page))
    return pages


def iter_frames(data: bytes, *, budget: LoopBudget, accepted: str = IMAGES_ACCEPTED) -> Iterator[np.ndarray]:
    """Yield every frame of a (multi-page) image as float32 grayscale in [0, 1], each charged to `budget`
    before it is decoded (a header's frame count and first size bound nothing); a refusal names `accepted`."""
    image = _open(data, budget.max_pixels, accepted)
    with image:
        try:
            declared = getattr(image, "n_frames", 1)  # Pillow reads every page's directory to count them
        except Exception:  # a damaged later page: Pillow raises TypeError, SyntaxError, KeyError, ValueError
            raise UnreadableImageError("a later page of the file is damaged") from None
        budget.check_declared(declared, image.width * image.height)
        index = 0
        while True:
            if index:
                try:
                    image.seek(index)
                except EOFError:
                    return
                except Exception:  # e.g. an APNG with a damaged frame sequence or a frame outside the canvas
                    raise UnreadableImageError(f"frame {index} of the file is damaged") from None
            budget.admit(image.width, image.height)
            yield _load(image)
            index += 1


def _open(data: bytes, max_pixels: int, accepted: str) -> Image.Image:
    if not data:
        raise EmptyImageError("the file is empty")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        # A damaged file of a known format (400) is not another kind of file (415): the magic bytes tell.
        claimed = next((f.name for f in FORMATS if f.decoder == "images" and f.matches(data)), None)
        if claimed:
            raise UnreadableImageError(f"the file starts like a {claimed} but its header is damaged") from None
        raise UnsupportedImageError(f"not a supported image (accepted: {accepted})") from None
    except Image.DecompressionBombError:
        raise ImageTooLargeError("image is over the decoder's own pixel limit") from None
    except Exception:
        raise UnreadableImageError("image header could not be read: it is damaged") from None
    if image.format not in IMAGE_FORMATS:
        image.close()
        raise UnsupportedImageError(f"image format {image.format} is not supported (accepted: {accepted})")
    check_size(image.width, image.height, max_pixels)
    return image


def _load(frame: Image.Image) -> np.ndarray:
    with _Refusing("image data"):
        frame.load()
        return _pil_frame_to_gray(frame)


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, frame: int = 0, accepted: str = IMAGES_ACCEPTED
) -> np.ndarray:
    """Decode image bytes to float32 grayscale in [0, 1], H x W, at the image's own size.

    The size is checked against `max_pixels` from the header before any pixel is decoded, so a
    decompression bomb costs nothing. Multi-page TIFFs give page `frame` (the first by default). A refusal
    of another kind of file names the `accepted` formats.
    """
    image = _open(data, max_pixels, accepted)
    with image:
        is_tiff = image.format == "TIFF"
        try:
            image.seek(frame)
        except EOFError:
            raise UnreadableImageError(f"image has no frame {frame}") from None
        except Exception:  # e.g. an APNG whose frame sequence is damaged
            raise UnreadableImageError(f"frame {frame} of the file is damaged") from None
        check_size(image.width, image.height, max_pixels)  # a later page has its own size
        try:
            return _load(image)
        except UnreadableImageError:
            if not is_tiff:
                raise
    return _decode_with_tifffile(data, max_pixels, frame)


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableImageError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return decode_image(data, max_pixels=max_pixels)
    except ImageError as exc:
        raise exc.naming(path) from None
