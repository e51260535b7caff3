"""Structural limits checked on the raw bytes before a decoder walks them.

A decoder's cost follows a file's structure, not its pixel count: a progressive JPEG with thousands of empty
scans, a TIFF with tens of thousands of pages or millions of strip entries, or a PNG with a million tiny
chunks holds a thread for minutes while declaring a small image, and a tiled TIFF whose tile is far larger
than the image makes the decoder allocate for the tile. These walks read only headers (a few bytes per
structure, in bounded loops), so they cost little and refuse such files before any decoder sees them. The
decode stage's own wall-clock and memory bounds (model/decode/isolated.py) stay the backstop for what no
header reveals.
"""

from __future__ import annotations

import struct

from model.decode.limits import MAX_SIDE
from model.errors import ImageTooLargeError, TooManyFramesError, UnreadableImageError

#: Progressive JPEGs use about ten scans; libjpeg-turbo's own tools suggest a cap of this order for untrusted
#: files, since every scan is a full pass over the coefficient buffer.
MAX_JPEG_SCANS = 100
#: Encoders split pixel data into chunks of 8-64 KiB, so a 20 MiB PNG has a few thousand.
MAX_PNG_CHUNKS = 65536
#: Tags in one TIFF directory: real files carry a few dozen.
MAX_TIFF_TAGS = 1024

_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_WIDTH, _HEIGHT, _ROWS_PER_STRIP = 256, 257, 278
_STRIP_OFFSETS, _STRIP_COUNTS, _TILE_WIDTH, _TILE_LENGTH, _TILE_OFFSETS, _TILE_COUNTS = 273, 279, 322, 323, 324, 325
_SAMPLES_PER_PIXEL, _PLANAR = 277, 284


def check_jpeg(data: bytes) -> None:
    # 0xFF in entropy-coded data is always stuffed as FF 00, so FF DA occurs only as a start-of-scan marker.
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise UnreadableImageError(f"the JPEG has {scans} scans; at most {MAX_JPEG_SCANS} are accepted")


def check_png(data: bytes, max_frames: int | None) -> None:
    """Count the chunks (and an APNG's declared frames for a loop) by their length fields alone."""
    offset, chunks = 8, 0
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise UnreadableImageError(f"the PNG has more than {MAX_PNG_CHUNKS} chunks")
        if kind == b"acTL" and max_frames is not None and offset + 12 <= len(data):
            (frames,) = struct.unpack_from(">I", data, offset + 8)
            if frames > max_frames:
                raise TooManyFramesError(f"the file has {frames} frames; the limit is {max_frames} per request")
        if kind == b"IEND":
            return
        offset += 12 + length  # length, type, payload, CRC


def _tiff_entries(data: bytes, order: str, offset: int) -> tuple[dict[int, tuple[int, int, int]], int]:
    """One directory's tags as {tag: (type, count, inline value)} and the next directory's offset."""
    if offset + 2 > len(data):
        raise UnreadableImageError("the TIFF points to a directory outside the file")
    (count,) = struct.unpack_from(order + "H", data, offset)
    if count > MAX_TIFF_TAGS:
        raise UnreadableImageError(f"a TIFF directory has {count} tags; at most {MAX_TIFF_TAGS} are accepted")
    end = offset + 2 + 12 * count
    if end + 4 > len(data):
        raise UnreadableImageError("a TIFF directory runs past the end of the file")
    entries = {}
    for index in range(count):
        tag, kind, values = struct.unpack_from(order + "HHI", data, offset + 2 + 12 * index)
        size = _TIFF_TYPE_SIZES.get(kind, 1)
        # A single SHORT or LONG is stored in the entry itself: the sizes and counts checked below are.
        raw = data[offset + 10 + 12 * index : offset + 14 + 12 * index]
        inline = struct.unpack_from(order + ("H" if size == 2 else "I"), raw)[0] if values == 1 else 0
        entries[tag] = (kind, values, inline)
    (next_offset,) = struct.unpack_from(order + "I", data, end)
    return entries, next_offset


def _check_tiff_page(entries: dict[int, tuple[int, int, int]], max_pixels: int) -> None:
    width, height = entries.get(_WIDTH, (0, 0, 0))[2], entries.get(_HEIGHT, (0, 0, 0))[2]
    if not width or not height or max(width, height) > MAX_SIDE:
        return  # the decoder's own size check names the problem
    samples = max(entries.get(_SAMPLES_PER_PIXEL, (0, 0, 1))[2], 1)
    planes = samples if entries.get(_PLANAR, (0, 0, 1))[2] == 2 else 1
    if _TILE_WIDTH in entries or _TILE_LENGTH in entries:
        tile_w, tile_h = entries.get(_TILE_WIDTH, (0, 0, 0))[2], entries.get(_TILE_LENGTH, (0, 0, 0))[2]
        # The TIFF specification asks for tiles in multiples of 16, so a tile may overhang the image by 15.
        if not tile_w or not tile_h or tile_w > width + 15 or tile_h > height + 15 or tile_w * tile_h > max_pixels:
            raise ImageTooLargeError(f"the TIFF's {tile_w}x{tile_h} tiles do not fit its {width}x{height} image")
        blocks = -(-width // tile_w) * -(-height // tile_h) * planes
        offsets = max(entries.get(_TILE_OFFSETS, (0, 0, 0))[1], entries.get(_TILE_COUNTS, (0, 0, 0))[1])
    else:
        rows = entries.get(_ROWS_PER_STRIP, (0, 0, height))[2] or height
        blocks = -(-height // min(rows, height)) * planes
        offsets = max(entries.get(_STRIP_OFFSETS, (0, 0, 0))[1], entries.get(_STRIP_COUNTS, (0, 0, 0))[1])
    if offsets > blocks:
        raise UnreadableImageError(f"the TIFF lists {offsets} data blocks for an image that has {blocks}")


def check_tiff(data: bytes, max_pixels: int, max_frames: int | None) -> None:
    """Walk the directory chain: each page's tile and strip tables must fit its size, and a loop's pages its
    frame limit; for one frame (`max_frames` None) only the first page is read, as the decoder does."""
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        raise UnreadableImageError("the file starts like a TIFF but its header is damaged")
    (offset,) = struct.unpack_from(order + "I", data, 4)
    limit = 1 if max_frames is None else max_frames
    seen: set[int] = set()
    while offset and (max_frames is not None or not seen):
        if offset in seen:
            raise UnreadableImageError("the TIFF's directories form a loop")
        seen.add(offset)
        if len(seen) > limit:  # only with frames=all: one page is read otherwise
            raise TooManyFramesError(
                f"the file has more than {limit} frames (TIFF pages); the limit is {limit} per request"
            )
        entries, offset = _tiff_entries(data, order, offset)
        _check_tiff_page(entries, max_pixels)


def check_structure(data: bytes, format_name: str | None, max_pixels: int, max_frames: int | None) -> None:
    """Refuse a file whose structure would make its decoder slow or greedy; `max_frames` None: one frame."""
    if format_name == "JPEG":
        check_jpeg(data)
    elif format_name == "PNG":
        check_png(data, max_frames)
    elif format_name == "TIFF":
        check_tiff(data, max_pixels, max_frames)
