"""Test files that carry several frames, made here with the same libraries users' tools use: DICOM written
by pydicom (uncompressed, multi-frame, RGB/YBR, and a compressed syntax the service cannot decode),
multi-page TIFF by tifffile, and AVI/MP4 clips by OpenCV's FFmpeg."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pydicom.pixels
import tifffile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from tests.conftest import phantom


def loop(count: int, height: int = 120, width: int = 160) -> np.ndarray:
    """`count` phantom frames whose nerve-like oval drifts a little from frame to frame, as in a scan."""
    base = phantom(height, width + 2 * count, seed=3)
    return np.stack([base[:, i * 2 : i * 2 + width] for i in range(count)])


def _dataset(multi: bool, syntax=ExplicitVRLittleEndian) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage if multi else UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientName = "Test^Phantom"
    # The identity a DICOM SEG made from it must carry and reference (model/dicom_seg.py).
    ds.PatientID = "PHANTOM-1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyID, ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "1", "20261205", "120000", "A1"
    return ds


def _saved(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dicom_bytes(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None) -> bytes:
    """Uncompressed DICOM: (rows, cols) one grey frame, (frames, rows, cols) grey loop, (..., 3) colour.
    For photometric YBR_FULL, pass RGB pixels: they are converted here, as a scanner would store them."""
    colour = pixels.shape[-1] == 3
    multi = pixels.ndim == (4 if colour else 3)
    if photometric == "YBR_FULL":
        pixels = pydicom.pixels.convert_color_space(pixels, "RGB", "YBR_FULL")
    ds = _dataset(multi)
    ds.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8)
    return _saved(ds)


def compressed_dicom_bytes(syntax=JPEGLosslessSV1, fragment: bytes = b"\xff\xd8\xff\xd9") -> bytes:
    """A DICOM whose pixel data is encapsulated in a compressed transfer syntax (JPEG Lossless by default:
    pydicom needs gdcm or pylibjpeg for it, which the service does not install)."""
    ds = _dataset(False, syntax)
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 42, 58, 1, 8, 8, 7
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    ds.PixelData = encapsulate([fragment])
    ds["PixelData"].VR = "OB"
    return _saved(ds)


def jpeg_baseline_dicom_bytes(gray: np.ndarray) -> bytes:
    """JPEG-baseline DICOM (a common ultrasound export): the frame as a JPEG, encapsulated."""
    ok, jpeg = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    ds = _dataset(False, JPEGBaseline8Bit)
    ds.Rows, ds.Columns = gray.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 8, 8, 7
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    return _saved(ds)


def multipage_tiff_bytes(frames: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, frames, photometric="minisblack")  # else 3 or 4 pages read as RGB(A) samples
    return buffer.getvalue()


def video_bytes(frames: np.ndarray, folder: Path, suffix: str = ".avi", fourcc: str = "MJPG") -> bytes:
    """A clip of grey frames; OpenCV writes only to files, so the test writes one (uploads never are)."""
    path = folder / f"clip{suffix}"
    height, width = frames.shape[1:]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (width, height), isColor=False)
    assert writer.isOpened(), f"OpenCV cannot write {suffix} with {fourcc}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path.read_bytes()


def y4m_bytes(frames: np.ndarray, fps: int = 30) -> bytes:
    """A YUV4MPEG2 clip of grey frames (what Chromium's fake camera plays, in a loop): 4:2:0, the frames as the
    luma plane, neutral chroma. `frames` is (count, height, width) uint8 with an even height and width."""
    count, height, width = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"4:2:0 needs an even frame size, got {width} x {height}")
    chroma = np.full((height // 2) * (width // 2) * 2, 128, np.uint8).tobytes()
    header = f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420\n".encode()
    return header + b"".join(b"FRAME\n" + frame.astype(np.uint8).tobytes() + chroma for frame in frames)
