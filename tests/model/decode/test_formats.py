"""The one table of accepted formats: signatures recognise each format's bytes, and every reader of the table
(the page's picker, the CLI, the API's raw bodies, the OpenAPI text) lists the same formats."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from model.decode.formats import ACCEPT_ATTRIBUTE, ACCEPTED, EXTENSIONS, FORMATS, MIME_TYPES, sniff
from tests.conftest import phantom
from tests.media import dicom_bytes, loop, video_bytes


def pil_bytes(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(phantom(20, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["TIFF", "PNG", "JPEG", "BMP"])
def test_images_are_recognised_by_their_bytes(fmt):
    assert sniff(pil_bytes(fmt)).name == fmt


def test_dicom_and_clips_are_recognised_by_their_bytes(tmp_path):
    assert sniff(dicom_bytes(loop(2))).name == "DICOM"
    assert sniff(video_bytes(loop(2), tmp_path, ".avi", "MJPG")).name == "AVI"
    assert sniff(video_bytes(loop(2), tmp_path, ".mp4", "mp4v")).name == "MP4"


def test_dicom_wins_over_a_tiff_header_in_its_preamble():
    data = dicom_bytes(loop(1))
    dual = b"II*\x00" + data[4:]
    assert sniff(dual).name == "DICOM"


def test_unknown_and_short_files_match_nothing():
    for data in (b"", b"B", b"GIF89a" + b"\0" * 200, b"RIFF\0\0\0\0WEBPVP8 ", np.zeros(200, np.uint8).tobytes()):
        assert sniff(data) is None, data[:12]


def test_the_table_is_consistent():
    names = [f.name for f in FORMATS]
    assert ACCEPTED == ", ".join(names) == "TIFF, PNG, JPEG, BMP, DICOM, MP4, AVI"
    assert all(ext.startswith(".") and ext == ext.lower() for ext in EXTENSIONS)
    assert len(EXTENSIONS) == sum(len(f.extensions) for f in FORMATS), "an extension belongs to two formats"
    assert set(ACCEPT_ATTRIBUTE.split(",")) == set(MIME_TYPES) | EXTENSIONS
    assert {f.decoder for f in FORMATS} == {"images", "dicom", "video"}
