"""The one table of accepted formats: what the page's file picker, the API, the CLIs and the OpenAPI text
accept, and how each format is recognised from its leading bytes (never from a filename).

Adding a format is a row here plus its decoder (`decoder` names the module in model/decode/ that reads it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Format:
    name: str
    extensions: tuple[str, ...]
    mime_types: tuple[str, ...]
    #: A regular expression the file's first bytes match (`.` is any byte): the format's signature.
    magic: bytes
    #: "images": Pillow with a tifffile fallback; "dicom": pydicom; "video": OpenCV's FFmpeg.
    decoder: Literal["images", "dicom", "video"]

    def matches(self, data: bytes) -> bool:
        return re.match(self.magic, data, flags=re.DOTALL) is not None


FORMATS: tuple[Format, ...] = (
    Format("TIFF", (".tif", ".tiff"), ("image/tiff",), rb"II\*\x00|MM\x00\*", "images"),
    Format("PNG", (".png",), ("image/png",), rb"\x89PNG\r\n\x1a\n", "images"),
    Format("JPEG", (".jpg", ".jpeg"), ("image/jpeg",), rb"\xff\xd8\xff", "images"),
    Format("BMP", (".bmp",), ("image/bmp",), rb"BM", "images"),
    # A DICOM Part 10 file: a 128-byte preamble, then "DICM".
    Format("DICOM", (".dcm", ".dicom"), ("application/dicom",), rb".{128}DICM", "dicom"),
    # MP4 (and MOV): an `ftyp` box first; AVI: a RIFF file of form "AVI ".
    Format("MP4", (".mp4",), ("video/mp4",), rb".{4}ftyp", "video"),
    Format("AVI", (".avi",), ("video/x-msvideo",), rb"RIFF.{4}AVI ", "video"),
)

#: Every accepted format's name, for messages and help texts: "TIFF, PNG, JPEG, BMP, DICOM, MP4, AVI".
ACCEPTED = ", ".join(f.name for f in FORMATS)
#: The formats Pillow decodes (their names are Pillow's format names).
IMAGE_FORMATS = tuple(f.name for f in FORMATS if f.decoder == "images")
EXTENSIONS = frozenset(ext for f in FORMATS for ext in f.extensions)
MIME_TYPES = tuple(mime for f in FORMATS for mime in f.mime_types)
#: The HTML file input's `accept` attribute: every MIME type, then every extension.
ACCEPT_ATTRIBUTE = ",".join([*MIME_TYPES, *(ext for f in FORMATS for ext in f.extensions)])


#: The order signatures are tried in. Long, fixed signatures first: a PNG, JPEG or clip cannot be mistaken for
#: anything else. DICOM next: its 128-byte preamble is free-form and may itself hold a TIFF header
#: (dual-format files), and such a file is read as the DICOM it declares itself to be. BMP's two letters last.
SNIFF_ORDER = ("PNG", "JPEG", "MP4", "AVI", "DICOM", "TIFF", "BMP")


def sniff(data: bytes) -> Format | None:
    """The format whose magic bytes the data starts with, or None."""
    by_name = {f.name: f for f in FORMATS}
    return next((by_name[name] for name in SNIFF_ORDER if by_name[name].matches(data)), None)


def is_dicom(data: bytes) -> bool:
    """Whether the data is read as DICOM (outputs that reference their source need one: the DICOM SEG)."""
    found = sniff(data)
    return found is not None and found.decoder == "dicom"
