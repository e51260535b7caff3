"""DICOM ultrasound (single- and multi-frame) decoded from memory with pydicom.

Scanners export DICOM, not TIFF. The file is parsed from the uploaded bytes (nothing is written anywhere)
and only the pixel module is used: no tag is copied into a result, so no patient data can leak through
one. The frame size and count come from the header and are checked before any pixel is decoded. Pixel
data that pydicom cannot decode with what is installed (e.g. JPEG Lossless or JPEG-LS, which need gdcm or
pylibjpeg plug-ins) is refused with a message naming the transfer syntax, before decoding is tried.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pydicom.pixels
from pydicom.errors import InvalidDicomError

from model.cine import check_frame_count
from model.decode.images import luminance, to_unit_float
from model.decode.limits import check_size
from model.errors import ImageError, UnreadableImageError, UnsupportedImageError, UnsupportedTransferSyntaxError


def _dataset(data: bytes) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError as exc:
        raise UnreadableImageError(f"DICOM header could not be read: {exc}") from None
    except Exception as exc:  # pydicom raises many types for damaged files
        raise UnreadableImageError(f"DICOM file is truncated or damaged: {exc}") from None
    if "PixelData" not in ds:
        raise UnsupportedImageError("DICOM file holds no image (no Pixel Data element)")
    return ds


def _frame_count(ds: pydicom.Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        raise UnreadableImageError(f"DICOM Number of Frames {ds.NumberOfFrames!r} is not a number") from None


def _check_decodable(ds: pydicom.Dataset) -> None:
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None:
        raise UnreadableImageError("DICOM file meta has no Transfer Syntax UID")
    try:
        decoder = pydicom.pixels.get_decoder(syntax)
    except NotImplementedError:
        decoder = None
    if decoder is None or not decoder.is_available:
        raise UnsupportedTransferSyntaxError(
            f"DICOM transfer syntax {syntax.name} ({syntax}) cannot be decoded by this service; "
            "export the images uncompressed (Explicit VR Little Endian), RLE or JPEG baseline"
        )


def _to_gray(frame: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """One decoded frame -> float32 grayscale in [0, 1], whatever its photometric interpretation."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric == "PALETTE COLOR":
        frame = pydicom.pixels.apply_color_lut(frame, ds)
    # pydicom converts YBR_FULL and YBR_FULL_422 to RGB itself (as_rgb), so colour arrives as RGB.
    if frame.ndim == 3:
        return luminance(frame)
    if np.issubdtype(frame.dtype, np.unsignedinteger):
        bits = int(ds.get("BitsStored", frame.dtype.itemsize * 8))
        unit = np.clip(frame.astype(np.float32) / float(2**bits - 1), 0.0, 1.0)
    else:  # signed samples have no fixed display range: stretch them
        unit = to_unit_float(frame.astype(np.float32))
    return 1.0 - unit if photometric == "MONOCHROME1" else unit  # MONOCHROME1: 0 is white


def dicom_frames(data: bytes, *, max_pixels: int, max_frames: int | None = None) -> list[np.ndarray]:
    """The frames of a DICOM file as float32 grayscale in [0, 1]: all of them, or the first when
    `max_frames` is None. `max_frames` is checked from the header; over it raises TooManyFramesError."""
    ds = _dataset(data)
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise UnreadableImageError("DICOM file has no valid Rows / Columns") from None
    check_size(columns, rows, max_pixels)
    count = _frame_count(ds)
    if max_frames is not None:
        check_frame_count(count, max_frames, rows * columns, max_pixels)
    _check_decodable(ds)
    wanted = range(count) if max_frames is not None else range(1)
    try:
        return [_to_gray(pydicom.pixels.pixel_array(ds, index=i), ds) for i in wanted]
    except ImageError:
        raise
    except Exception as exc:  # decoders raise many types for damaged pixel data
        raise UnreadableImageError(f"DICOM pixel data could not be decoded: {exc}") from None
