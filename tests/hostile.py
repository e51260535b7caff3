"""Builders for hostile and unusual image files, shared by the decoder tests, the API table and the fuzzers.

Bombs are written by hand (a header that declares a huge size and almost no data), so making one costs
nothing; the real images are small phantoms in every container and sample layout the API claims to accept.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import tifffile
from PIL import Image

from tests.conftest import phantom

#: Declared by the bombs: 10^10 pixels, 10 GB as 8-bit and 40 GB as float32 if anything allocated it.
BOMB_SIDE = 100_000


def pil_encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def tiff_encode(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but carries almost no data: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def blank_png(width: int, height: int) -> bytes:
    """A real, fully decodable all-black 8-bit PNG, streamed row by row so the test never holds its pixels.

    10000 x 10000 comes to ~100 kB: far inside the byte limit, far over the pixel limit.
    """
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte 0, then the row's samples
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def tiff_header_only(width: int, height: int) -> bytes:
    """A little-endian baseline TIFF whose one IFD declares width x height 8-bit grey in a 16-byte strip."""
    entries = [  # (tag, type, count, value): SHORT = 3, LONG = 4
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8),
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, 16),
    ]
    ifd_offset = 8 + 16
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    return b"II*\0" + struct.pack("<I", ifd_offset) + b"\0" * 16 + ifd + b"\0\0\0\0"


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real small JPEG whose start-of-frame marker is patched to declare width x height."""
    data = bytearray(pil_encode(Image.fromarray(phantom(16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)  # marker, length (2), precision (1), then H, W
    return bytes(data)


def bmp_declaring(width: int, height: int) -> bytes:
    """A real 4x4 BMP whose BITMAPINFOHEADER is patched to declare width x height."""
    data = bytearray(pil_encode(Image.fromarray(phantom(4, 4)), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def multipage_tiff(pages: int = 3, height: int = 120, width: int = 160) -> bytes:
    """A TIFF of `pages` separate grey pages (a (3, H, W) array through tifffile would be one RGB page)."""
    images = [Image.fromarray(phantom(height, width, seed=s)) for s in range(pages)]
    return pil_encode(images[0], "TIFF", save_all=True, append_images=images[1:])


def png_with_corrupt_data() -> bytes:
    """A PNG whose compressed pixel stream is overwritten mid-way (its chunk CRC recomputed to match, so
    only the zlib stream is wrong)."""
    data = bytearray(pil_encode(Image.fromarray(phantom(40, 60)), "PNG"))
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    start = idat + 4
    payload = bytes(data[start : start + 2]) + b"\xff" * (length - 2)  # keep the zlib header
    return bytes(data[: idat - 4]) + png_chunk(b"IDAT", payload) + bytes(data[start + length + 4 :])
