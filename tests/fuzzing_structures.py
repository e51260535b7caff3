"""Structure-aware hypothesis strategies: TIFF directories, APNG chunk sequences and DICOM elements drawn field
by field.

Byte flips (tests/fuzzing.py) rarely keep a file parseable far enough to reach the code that lays out its
pixels: one flip in a TIFF directory usually breaks the directory itself. These strategies build files whose
container is well formed and whose fields are drawn from valid, edge and absurd values, so the decoders'
layout logic (strip and tile tables, frame sequences, pixel modules) meets every combination of them.
"""

from __future__ import annotations

import functools
import io
import struct

import numpy as np
import pydicom
import pydicom.filebase
import pydicom.filewriter
from hypothesis import strategies as st
from pydicom import uid
from pydicom.dataelem import DataElement
from pydicom.encaps import encapsulate, generate_fragments

from tests.conftest import phantom
from tests.fuzzing import damage
from tests.hostile import _apng_chunks, _apng_from, _grey_page, apng
from tests.media import _saved, dicom_bytes, jpeg_baseline_dicom_bytes, loop

#: The fuzz tests' frame cap for decode_all: small, so that a file declaring a few more frames meets it.
FUZZ_MAX_FRAMES = 8

# --- TIFF directories ---------------------------------------------------------------------------------------

#: Bytes per value of each TIFF field type (what a reader uses to tell an inline value from an offset).
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8}
#: The baseline and tiling tags a reader lays pixels out by, each with valid, edge and absurd values.
TIFF_TAG_VALUES: dict[int, list[int]] = {
    254: [0, 1, 2],  # NewSubfileType
    256: [0, 1, 7, 16, 1000, 16384, 16385, 65535, 2**32 - 1],  # ImageWidth
    257: [0, 1, 7, 16, 1000, 16384, 16385, 65535, 2**32 - 1],  # ImageLength
    258: [0, 1, 4, 8, 12, 16, 24, 32, 64, 255],  # BitsPerSample
    259: [0, 1, 2, 3, 4, 5, 6, 7, 8, 32773, 32946, 34712, 50000],  # Compression
    262: [0, 1, 2, 3, 4, 5, 6, 8, 32844, 99],  # PhotometricInterpretation
    266: [0, 1, 2],  # FillOrder
    273: [0, 8, 12, 2**31],  # StripOffsets
    277: [0, 1, 2, 3, 4, 5, 255, 65535],  # SamplesPerPixel
    278: [0, 1, 2, 16, 2**32 - 1],  # RowsPerStrip
    279: [0, 1, 16, 256, 2**31],  # StripByteCounts
    284: [0, 1, 2, 3],  # PlanarConfiguration
    317: [0, 1, 2, 3],  # Predictor
    320: [8, 2**31],  # ColorMap (an offset)
    322: [0, 1, 16, 17, 32, 32768],  # TileWidth
    323: [0, 1, 16, 17, 32, 32768],  # TileLength
    324: [0, 8, 2**31],  # TileOffsets
    325: [0, 16, 2**31],  # TileByteCounts
    338: [0, 1, 2],  # ExtraSamples
    339: [0, 1, 2, 3, 4, 5],  # SampleFormat
}
#: SHORT and LONG are what real files use; ASCII and RATIONAL where a number is expected; then bogus types.
_TIFF_TYPES = st.one_of(st.sampled_from([3, 4]), st.sampled_from([1, 2, 5, 7, 9, 11, 12, 16, 0, 14, 65535]))
_TIFF_COUNTS = st.one_of(
    st.sampled_from([0, 1, 1, 2, 3, 4]), st.integers(5, 64), st.sampled_from([2**16, 2**20, 2**31 - 1, 2**32 - 1])
)
#: Where a value that is an offset points: into the file, at its last bytes, just past it, or far away.
_PLACES = ["inside", "edge", "past", "far"]


@st.composite
def _tiff_entry(draw: st.DrawFn) -> tuple[int, int, int, tuple[str, int]]:
    """(tag, type, count, (how, value)): `how` is "value" for a literal, else where an offset points (resolved
    once the file's length is known)."""
    tag = draw(st.one_of(st.sampled_from(sorted(TIFF_TAG_VALUES)), st.integers(0, 65535)))
    kind, count = draw(_TIFF_TYPES), draw(_TIFF_COUNTS)
    how = draw(st.sampled_from(["value", "value", *_PLACES]))
    literal = st.one_of(st.sampled_from(TIFF_TAG_VALUES.get(tag, [0, 1])), st.integers(0, 2**32 - 1))
    return tag, kind, count, (how, draw(literal) if how == "value" else 0)


def _grey_entries(width: int, height: int) -> dict[int, tuple[int, int, tuple[str, int]]]:
    """A valid 8-bit grey page whose one strip is the file's first width x height payload bytes."""
    page = _grey_page(width, height, **{"279": (4, 1, width * height)})
    return {tag: (kind, count, ("value", value)) for tag, kind, count, value in page}


@st.composite
def _tiff_page(draw: st.DrawFn, width: int, height: int) -> list[tuple[int, int, int, tuple[str, int]]]:
    """A valid grey page with a few entries replaced, added, deleted or duplicated, in tag order or not."""
    entries = _grey_entries(width, height)
    duplicates = []
    for _ in range(draw(st.integers(0, 6))):
        tag, kind, count, value = draw(_tiff_entry())
        action = draw(st.sampled_from(["set", "set", "set", "delete", "duplicate"]))
        if action == "set":
            entries[tag] = (kind, count, value)
        elif action == "delete" and entries:
            del entries[draw(st.sampled_from(sorted(entries)))]
        elif action == "duplicate":
            duplicates.append((tag, kind, count, value))
    page = [(tag, *entry) for tag, entry in sorted(entries.items())] + duplicates
    return draw(st.permutations(page)) if draw(st.integers(0, 9)) == 0 else page


def _place(draw: st.DrawFn, how: str, length: int) -> int:
    if how == "inside":
        return draw(st.integers(0, max(length - 1, 0)))
    if how == "edge":
        return max(length - draw(st.integers(1, 8)), 0)
    if how == "past":
        return length + draw(st.integers(0, 64))
    return draw(st.sampled_from([2**31 - 1, 2**32 - 1]))


@st.composite
def tiff_directories(draw: st.DrawFn) -> bytes:
    """A TIFF of one to three hand-built directories (either byte order) over a small payload of pixels and
    plausible offsets; entries drawn from the baseline tags and any others, with any type and count, values
    and offsets inside, at the edge of and past the file; the chain may end, loop back or point away."""
    order = draw(st.sampled_from(["<", ">"]))
    width, height = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    # Pixels first (the strip offset 8 of the valid page), then numbers a table offset may land on.
    table = draw(st.lists(st.one_of(st.sampled_from([0, 8, 16, 256]), st.integers(0, 2**32 - 1)), max_size=16))
    payload = draw(st.binary(min_size=width * height, max_size=width * height))
    payload += b"".join(struct.pack(order + "I", value) for value in table)
    pages = [draw(_tiff_page(width, height)) for _ in range(draw(st.integers(1, 3)))]
    starts = [8 + len(payload)]
    for page in pages:
        starts.append(starts[-1] + 6 + 12 * len(page))
    length = starts.pop()
    chain = draw(st.sampled_from(["end", "end", "end", "first", "self", *_PLACES]))
    last = {"end": 0, "first": starts[0], "self": starts[-1]}.get(chain)
    data = bytearray((b"II*\0" if order == "<" else b"MM\0*") + struct.pack(order + "I", starts[0]) + payload)
    for number, page in enumerate(pages):
        data += struct.pack(order + "H", len(page))
        for tag, kind, count, (how, value) in page:
            value = value if how == "value" else _place(draw, how, length)
            inline_short = _TIFF_TYPE_SIZES.get(kind) == 2 and count <= 2 and how == "value"
            field = struct.pack(order + "HH", value % 2**16, 0) if inline_short else struct.pack(order + "I", value)
            data += struct.pack(order + "HHI", tag, kind, count) + field
        following = starts[number + 1] if number + 1 < len(pages) else last
        data += struct.pack(order + "I", _place(draw, chain, length) if following is None else following)
    return bytes(data)


# --- APNG chunk sequences -----------------------------------------------------------------------------------

#: fcTL's fields after the chunk type: (offset, struct format) of sequence number, width, height, x and y
#: offsets, delay numerator and denominator, dispose and blend operations.
_FCTL_FIELDS = [(0, ">I"), (4, ">I"), (8, ">I"), (12, ">I"), (16, ">I"), (20, ">H"), (22, ">H"), (24, "B"), (25, "B")]
_ANIMATION_CHUNKS = (b"acTL", b"fcTL", b"fdAT", b"IDAT")
#: The payload a rewritten chunk must still have (one already cut short is left as it is).
_SIZES = {b"fcTL": 26, b"acTL": 8, b"fdAT": 4, b"IHDR": 8}


@functools.cache
def _apng_seed(frames: int, side: int) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(_apng_chunks(apng(frames, side)))


def _field_value(draw: st.DrawFn, fmt: str, side: int) -> int:
    """A value for a field of struct format `fmt`: zero, around the canvas's side, or the type's extremes."""
    top = {"B": 255, ">H": 65535, ">I": 2**32 - 1}[fmt]
    special = [value for value in (0, 1, side - 1, side, side + 1, 2 * side, 2**31 - 1, top) if value <= top]
    return draw(st.one_of(st.sampled_from(special), st.integers(0, top)))


@st.composite
def apng_sequences(draw: st.DrawFn) -> bytes:
    """A real small APNG whose chunk sequence is edited: animation chunks dropped, duplicated or moved; fcTL
    fields, fdAT sequence numbers, the canvas size and acTL's frame and play counts rewritten (zero, outside
    the canvas, disagreeing with the chunks); chunk payloads cut short. CRCs are recomputed, so a decoder sees
    a consistent file whose animation makes no sense."""
    frames, side = draw(st.integers(2, 4)), draw(st.sampled_from([4, 8, 16]))
    chunks = list(_apng_seed(frames, side))
    for _ in range(draw(st.integers(0, 5))):
        action = draw(st.sampled_from(["drop", "duplicate", "move", "fcTL", "fcTL", "acTL", "fdAT", "IHDR", "cut"]))
        animation = [i for i, (kind, _) in enumerate(chunks) if kind in _ANIMATION_CHUNKS]
        if action in ("drop", "duplicate", "move", "cut") and animation:
            index = draw(st.sampled_from(animation))
            chunk = chunks[index]
            if action == "drop":
                del chunks[index]
            elif action == "duplicate":
                chunks.insert(draw(st.one_of(st.just(index), st.integers(1, len(chunks) - 1))), chunk)
            elif action == "move":
                del chunks[index]
                chunks.insert(draw(st.integers(1, len(chunks) - 1)), chunk)
            else:
                chunks[index] = (chunk[0], chunk[1][: draw(st.integers(0, max(len(chunk[1]) - 1, 0)))])
            continue
        kind = action.encode()
        targets = [i for i, (name, payload) in enumerate(chunks) if name == kind and len(payload) >= _SIZES[kind]]
        if not targets:
            continue
        index = draw(st.sampled_from(targets))
        payload = bytearray(chunks[index][1])
        if kind == b"fcTL":
            offset, fmt = draw(st.sampled_from(_FCTL_FIELDS))
            struct.pack_into(fmt, payload, offset, _field_value(draw, fmt, side))
        elif kind == b"acTL":  # frame count (around the real one and the loop cap) or play count
            declared = st.sampled_from([0, 1, frames - 1, frames + 1, FUZZ_MAX_FRAMES + 1, 2**31, 2**32 - 1])
            offset = draw(st.sampled_from([0, 4]))
            struct.pack_into(">I", payload, offset, draw(declared if offset == 0 else st.integers(0, 2**32 - 1)))
        elif kind == b"fdAT":  # its sequence number
            struct.pack_into(">I", payload, 0, _field_value(draw, ">I", side))
        else:  # the canvas's width or height
            struct.pack_into(">I", payload, draw(st.sampled_from([0, 4])), _field_value(draw, ">I", side))
        chunks[index] = (kind, bytes(payload))
    return _apng_from(chunks)


# --- DICOM elements -----------------------------------------------------------------------------------------


@functools.cache
def _dicom_seeds() -> tuple[bytes, ...]:
    """Small valid DICOMs of each pixel layout the decoder reads: 8- and 16-bit grey, a 3-frame loop, RGB,
    YBR_FULL and JPEG baseline."""
    gray = phantom(8, 12, seed=5)
    rgb = np.stack([gray, gray[::-1], 255 - gray], axis=-1)
    return (
        dicom_bytes(gray),
        dicom_bytes(gray.astype(np.uint16) * 16, bits_stored=12),
        dicom_bytes(loop(3, 8, 12)),
        dicom_bytes(rgb),
        dicom_bytes(rgb, "YBR_FULL"),
        jpeg_baseline_dicom_bytes(phantom(8, 16, seed=5)),
    )


#: Pixel-module elements: (VR, values) valid for some seed, at the type's edges, or nonsense.
DICOM_ELEMENT_VALUES: dict[str, tuple[str, list]] = {
    "Rows": ("US", [0, 1, 7, 8, 9, 16, 1000, 16384, 16385, 65535]),
    "Columns": ("US", [0, 1, 11, 12, 13, 16, 1000, 16384, 16385, 65535]),
    "NumberOfFrames": (
        "IS",
        ["0", "-1", "1", "2", "3", "8", "9", "1000000", "2147483648", "99999999999999", "abc", "", "1.5"],
    ),
    "BitsAllocated": ("US", [0, 1, 8, 12, 16, 32, 64, 255, 65535]),
    "BitsStored": ("US", [0, 1, 7, 8, 12, 16, 17, 32, 65535]),
    "HighBit": ("US", [0, 7, 11, 15, 16, 31, 65535]),
    "SamplesPerPixel": ("US", [0, 1, 2, 3, 4, 65535]),
    "PhotometricInterpretation": (
        "CS",
        ["MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR", "YBR_RCT", "HSV", "X"],
    ),
    "PixelRepresentation": ("US", [0, 1, 2, 65535]),
    "PlanarConfiguration": ("US", [0, 1, 2]),
}
#: What the file meta may claim the body is encoded in: the other native syntaxes, compressed ones the
#: service decodes (JPEG baseline, RLE) and cannot (JPEG 2000, JPEG Lossless), deflated, and a UID that names
#: no syntax.
_SYNTAXES = [
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.JPEGBaseline8Bit,
    uid.RLELossless,
    uid.JPEGLosslessSV1,
    uid.JPEG2000,
    "1.2.3.4",
]


def _saved_with_syntax(ds: pydicom.Dataset, syntax: str) -> bytes:
    """The dataset written in its own encoding behind a file meta that claims `syntax` (pydicom refuses to
    write such a file, and real ones exist: an exporter that re-labels without re-encoding)."""
    data = _saved(ds)
    # Preamble and "DICM" (132 bytes), then the group length element (12 bytes) and the rest of the meta.
    (meta_length,) = struct.unpack_from("<I", data, 140)
    meta = pydicom.filebase.DicomBytesIO()
    ds.file_meta.TransferSyntaxUID = syntax
    pydicom.filewriter.write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    return data[:132] + meta.getvalue() + data[144 + meta_length :]


def _resized_pixels(draw: st.DrawFn, ds: pydicom.Dataset) -> bytes:
    """The pixel data cut short or lengthened. Encapsulated data is changed in its first fragment and
    encapsulated again, once or twice (as if a second frame), since pydicom writes nothing else."""
    encapsulated = ds.file_meta.TransferSyntaxUID.is_encapsulated
    pixels = next(generate_fragments(ds.PixelData)) if encapsulated else ds.PixelData
    shortest = 2 if encapsulated else 0  # pydicom's smallest fragment
    if draw(st.booleans()):
        pixels = pixels[: draw(st.integers(shortest, max(len(pixels) - 1, shortest)))]
    else:
        pixels += draw(st.binary(min_size=1, max_size=len(pixels) + 1))
    return encapsulate([pixels] * draw(st.integers(1, 2))) if encapsulated else pixels


#: Where the pixel module's elements start in an explicit-VR little-endian file (their group and element
#: numbers, followed by the VR): SamplesPerPixel to PixelRepresentation, and PixelData.
_PIXEL_MODULE_TAGS = [
    *(
        struct.pack("<HH", 0x0028, element)
        for element in (0x02, 0x04, 0x06, 0x08, 0x10, 0x11, 0x100, 0x101, 0x102, 0x103)
    ),
    struct.pack("<HH", 0x7FE0, 0x0010),
]


def _damaged_vr(draw: st.DrawFn, data: bytes) -> bytes:
    """One pixel-module element's VR overwritten: unknown, another number's, or a long-length one (whose
    length field then reads differently). pydicom converts an element only when it is read, so a broken one
    surfaces in whichever line of the decoder reads it first, not when the file is parsed."""
    found = [offset for offset in (data.find(tag, 132) for tag in _PIXEL_MODULE_TAGS) if offset >= 0]
    if not found:
        return data
    offset = draw(st.sampled_from(found)) + 4
    vr = draw(
        st.one_of(
            st.sampled_from([b"U\0", b"\0\0", b"XX", b"UL", b"IS", b"FD", b"OB", b"UN", b"SQ"]),
            st.binary(min_size=2, max_size=2),
        )
    )
    return data[:offset] + vr + data[offset + 2 :]


@st.composite
def dicom_elements(draw: st.DrawFn) -> bytes:
    """A small valid DICOM whose pixel-module elements are changed with pydicom before it is saved: sizes,
    frame count, bit depths, samples, photometric interpretation and the rest set to valid, edge and
    nonsense values or deleted; pixel data cut short or lengthened; the transfer syntax swapped in the file
    meta; then, sometimes, a few byte-level mutations."""
    ds = pydicom.dcmread(io.BytesIO(draw(st.sampled_from(_dicom_seeds()))))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["set", "set", "set", "delete", "pixels"]))
        if action == "set":
            keyword = draw(st.sampled_from(sorted(DICOM_ELEMENT_VALUES)))
            vr, values = DICOM_ELEMENT_VALUES[keyword]
            # Stored as given: pydicom would refuse to convert a nonsense value, which is the point here.
            ds[keyword] = DataElement(keyword, vr, draw(st.sampled_from(values)), already_converted=True)
        elif action == "delete":
            keyword = draw(st.sampled_from([*sorted(DICOM_ELEMENT_VALUES), "PixelData"]))
            if keyword in ds:
                del ds[keyword]
        elif "PixelData" in ds:
            ds.PixelData = _resized_pixels(draw, ds)
    # A quarter of the files only: a swapped syntax mostly stops the parse before the pixel module.
    data = _saved_with_syntax(ds, draw(st.sampled_from(_SYNTAXES))) if draw(st.integers(0, 3)) == 0 else _saved(ds)
    if not draw(st.integers(0, 3)):
        data = _damaged_vr(draw, data)
    if draw(st.integers(0, 3)):
        return data
    # Past the preamble and "DICM": a file that no longer starts like a DICOM is refused before pydicom reads it.
    return data[:132] + damage(draw, data[132:], max_actions=2)


#: Every structured strategy, for the /predict fuzz beside tests/fuzzing.py's `files`.
structured_files = st.one_of(tiff_directories(), apng_sequences(), dicom_elements())
