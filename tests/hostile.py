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


def tiff_from_entries(pages: list[list[tuple[int, int, int, int]]], payload: bytes = b"\0" * 16) -> bytes:
    """A little-endian TIFF of hand-written directories, one per page: (tag, type, count, value) entries whose
    single values sit in the entry; `payload` follows the header (the data offsets point at byte 8)."""
    data = bytearray(b"II*\0" + struct.pack("<I", 8 + len(payload)) + payload)
    for number, entries in enumerate(pages):
        ifd = struct.pack("<H", len(entries))
        for tag, kind, count, value in entries:
            packed = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
            ifd += struct.pack("<HHI", tag, kind, count) + packed
        last = number == len(pages) - 1
        next_offset = 0 if last else len(data) + len(ifd) + 4
        data += ifd + struct.pack("<I", next_offset)
    return bytes(data)


def _grey_page(width: int, height: int, **extra: tuple[int, int, int]) -> list[tuple[int, int, int, int]]:
    """A directory of an 8-bit grey page; `extra` maps a tag number (as a string) to (type, count, value)."""
    entries = {256: (4, 1, width), 257: (4, 1, height), 258: (3, 1, 8), 259: (3, 1, 1), 262: (3, 1, 1)}
    entries |= {273: (4, 1, 8), 277: (3, 1, 1), 278: (4, 1, height), 279: (4, 1, 16)}
    entries |= {int(tag): value for tag, value in extra.items()}
    return [(tag, *entries[tag]) for tag in sorted(entries)]


def tiff_tile_larger_than_image() -> bytes:
    """A 16 x 16 image stored in one 32768 x 32768 tile: a small file a decoder would allocate a GiB for."""
    page = [e for e in _grey_page(16, 16) if e[0] not in (273, 278, 279)]
    page += [(322, 4, 1, 32768), (323, 4, 1, 32768), (324, 4, 1, 8), (325, 4, 1, 16)]
    return tiff_from_entries([sorted(page)])


def tiff_million_strips() -> bytes:
    """A 16 x 16 image whose strip tables declare a million entries (the walk itself is the cost)."""
    return tiff_from_entries([_grey_page(16, 16, **{"273": (4, 1_000_000, 8), "279": (4, 1_000_000, 8)})])


def tiff_directory_loop() -> bytes:
    """Two directories that point at each other: a reader that follows them never ends."""
    data = bytearray(tiff_from_entries([_grey_page(4, 4), _grey_page(4, 4)]))
    first = struct.unpack_from("<I", data, 4)[0]
    entries = struct.unpack_from("<H", data, first)[0]
    second = struct.unpack_from("<I", data, first + 2 + 12 * entries)[0]
    second_entries = struct.unpack_from("<H", data, second)[0]
    struct.pack_into("<I", data, second + 2 + 12 * second_entries, first)
    return bytes(data)


def tiff_growing_pages(first: int, side: int, pages: int) -> bytes:
    """A real multi-page TIFF whose first page is first x first and whose later pages are side x side: a
    budget computed from page 0 alone lets the later ones through."""
    images = [Image.new("L", (first, first))] + [Image.new("L", (side, side), 90) for _ in range(pages - 1)]
    return pil_encode(images[0], "TIFF", save_all=True, append_images=images[1:], compression="tiff_deflate")


def jpeg_with_scans(scans: int) -> bytes:
    """A real progressive JPEG whose last scan is repeated until the file has `scans` of them."""
    data = pil_encode(Image.fromarray(phantom(32, 32)), "JPEG", progressive=True)
    last = data.rindex(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    have = data.count(b"\xff\xda")
    return data[:end] + data[last:end] * max(scans - have, 0) + data[end:]


def png_with_chunks(count: int) -> bytes:
    """A real small PNG with `count` empty private ancillary chunks before its pixel data."""
    data = pil_encode(Image.fromarray(phantom(8, 8)), "PNG")
    idat = data.index(b"IDAT") - 4
    return data[:idat] + png_chunk(b"zzZz", b"") * count + data[idat:]


def apng(frames: int = 3, side: int = 16) -> bytes:
    """A real animated PNG of `frames` grey frames."""
    images = [Image.fromarray(phantom(side, side, seed=s)) for s in range(frames)]
    return pil_encode(images[0], "PNG", save_all=True, append_images=images[1:])


def _apng_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        chunks.append((kind, data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    return chunks


def _apng_from(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(kind, payload) for kind, payload in chunks)


def apng_two_fctl_in_a_row() -> bytes:
    """An APNG whose second frame's control chunk is doubled (a damaged frame sequence)."""
    chunks = _apng_chunks(apng())
    second = [i for i, (kind, _) in enumerate(chunks) if kind == b"fcTL"][1]
    return _apng_from(chunks[: second + 1] + [chunks[second]] + chunks[second + 1 :])


def apng_frame_outside_canvas() -> bytes:
    """An APNG whose second frame is placed beyond the canvas's right edge."""
    chunks = _apng_chunks(apng())
    second = [i for i, (kind, _) in enumerate(chunks) if kind == b"fcTL"][1]
    payload = bytearray(chunks[second][1])
    struct.pack_into(">I", payload, 12, 10_000)  # x_offset: sequence (4), width (4), height (4), then x
    chunks[second] = (b"fcTL", bytes(payload))
    return _apng_from(chunks)


def gif_loop(frames: int = 5) -> bytes:
    images = [Image.fromarray(phantom(16, 16, seed=s)) for s in range(frames)]
    return pil_encode(images[0], "GIF", save_all=True, append_images=images[1:])


def dicom_jpeg_larger_than_header(rows: int = 16, columns: int = 16) -> bytes:
    """A JPEG-baseline DICOM whose embedded 240 x 320 JPEG is far larger than its Rows x Columns declare."""
    import pydicom

    from tests.media import jpeg_baseline_dicom_bytes

    ds = pydicom.dcmread(io.BytesIO(jpeg_baseline_dicom_bytes(phantom(240, 320))))
    ds.Rows, ds.Columns = rows, columns
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
