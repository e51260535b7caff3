"""DICOM ultrasound (single- and multi-frame) decoded from memory with pydicom.

Scanners export DICOM, not TIFF. The file is parsed from the uploaded bytes (nothing is written anywhere)
and only the pixel module is used for masks: no tag is copied into their results, so no patient data can leak
through one. The one exception is the DICOM SEG output, which must belong to its source's study: for it,
`dicom_header` gives the header without pixels (model/dicom_seg.py says which attributes reach the SEG).
The frame size and count come from the header and are checked before any pixel is decoded, and a compressed
frame's own header must agree with them: a JPEG inside a DICOM is decoded at the JPEG's size, whatever Rows
and Columns say. Pixel data that pydicom cannot decode with what is installed (e.g. JPEG Lossless, which needs
gdcm or pylibjpeg plug-ins) is refused with a message naming the transfer syntax, before decoding is tried.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pydicom.encaps
import pydicom.pixels
from PIL import Image
from pydicom.errors import InvalidDicomError

from model.cine import LoopBudget
from model.decode.formats import is_dicom
from model.decode.images import luminance, to_unit_float
from model.decode.limits import check_size
from model.errors import ImageError, UnreadableImageError, UnsupportedImageError, UnsupportedTransferSyntaxError


def _dataset(data: bytes) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        raise UnreadableImageError("DICOM header could not be read: it is damaged") from None
    except Exception:  # pydicom raises many types for damaged files
        raise UnreadableImageError("DICOM file is truncated or damaged") from None
    if "PixelData" not in ds:
        raise UnsupportedImageError("DICOM file holds no image (no Pixel Data element)")
    return ds


def dicom_header(data: bytes) -> pydicom.Dataset:
    """The file's header (every element but the pixel data), for outputs that must reference their source."""
    if not is_dicom(data):
        raise UnsupportedImageError("not a DICOM file")
    try:
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception:  # pydicom raises many types for damaged files
        raise UnreadableImageError("DICOM header could not be read: it is damaged") from None
    return pydicom.Dataset(header)  # a plain dataset: no file object to carry across processes


def _frame_count(ds: pydicom.Dataset) -> int:
    # pydicom converts an element when it is first read, so a damaged one raises here, in many types.
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except Exception:
        raise UnreadableImageError("DICOM Number of Frames is not a number") from None


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


def _check_embedded_size(ds: pydicom.Dataset, count: int, index: int, rows: int, columns: int) -> None:
    """A JPEG frame is decoded at its own size: refuse one whose header disagrees with Rows x Columns."""
    if not ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return
    try:
        fragment = pydicom.encaps.get_frame(ds.PixelData, index, number_of_frames=count)
    except Exception:
        raise UnreadableImageError(f"DICOM frame {index} could not be found in the pixel data") from None
    if not fragment.startswith(b"\xff\xd8"):
        return  # not JPEG: RLE and the others decode into a buffer of Rows x Columns
    try:
        with Image.open(io.BytesIO(fragment)) as embedded:  # reads the JPEG's header only
            size = embedded.size
    except Exception:
        raise UnreadableImageError(f"the JPEG of DICOM frame {index} is damaged") from None
    if size != (columns, rows):
        raise UnreadableImageError(
            f"the JPEG of DICOM frame {index} is {size[0]}x{size[1]}, but the header says {columns}x{rows}"
        )


def dicom_frames(data: bytes, *, max_pixels: int, max_frames: int | None = None) -> list[np.ndarray]:
    """The frames of a DICOM file as float32 grayscale in [0, 1]: all of them, or the first when
    `max_frames` is None. Over `max_frames` or the loop's pixel budget raises TooManyFramesError."""
    ds = _dataset(data)
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
    except Exception:  # missing, not a number, or an element pydicom cannot convert (a damaged VR)
        raise UnreadableImageError("DICOM file has no valid Rows / Columns") from None
    check_size(columns, rows, max_pixels)
    count = _frame_count(ds)
    budget = LoopBudget(max_frames or 1, max_pixels)
    if max_frames is not None:
        budget.check_declared(count, rows * columns)
    _check_decodable(ds)
    frames = []
    for index in range(count if max_frames is not None else 1):
        budget.admit(columns, rows)
        _check_embedded_size(ds, count, index, rows, columns)
        try:
            frames.append(_to_gray(pydicom.pixels.pixel_array(ds, index=index), ds))
        except ImageError:
            raise
        except Exception:  # decoders raise many types for damaged pixel data
            raise UnreadableImageError(f"DICOM pixel data of frame {index} could not be decoded") from None
    return frames
