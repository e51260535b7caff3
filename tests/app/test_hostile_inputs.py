"""Hostile and unusual requests, one table: each gets its documented status and error code (or is accepted
and handled, where docs/reliability.md says so), never a 500 or a traceback, writes nothing to disk, and
the service answers the next good request.

docs/reliability.md reproduces this table; `test_reliability_doc_lists_every_case` keeps the two in step.
"""

from __future__ import annotations

import builtins
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile

from tests.app.conftest import tiff_bytes
from tests.conftest import ROOT, phantom
from tests.hostile import (
    BOMB_SIDE,
    apng,
    apng_frame_outside_canvas,
    apng_two_fctl_in_a_row,
    blank_png,
    bmp_declaring,
    dicom_jpeg_larger_than_header,
    gif_loop,
    jpeg_declaring,
    jpeg_with_scans,
    multipage_tiff,
    pil_encode,
    png_header_only,
    png_with_chunks,
    png_with_corrupt_data,
    tiff_directory_loop,
    tiff_encode,
    tiff_growing_pages,
    tiff_header_only,
    tiff_million_strips,
    tiff_tile_larger_than_image,
    truncated,
)

GRAY = phantom(120, 160, seed=7)
GOOD = tiff_bytes(GRAY)
BOUNDARY = "hostileboundary"


def frame(data: bytes, filename: str = "frame.tif", field_name: str = "image", **fields) -> dict:
    return {"data": {field_name: (io.BytesIO(data), filename), **fields}}


def raw(body: bytes, content_type: str) -> dict:
    return {"data": body, "content_type": content_type}


def files(*blobs: bytes, **fields) -> dict:
    return {"data": {"images": [(io.BytesIO(b), f"{i}.tif") for i, b in enumerate(blobs)], **fields}}


def form_only(**fields: str) -> dict:
    """A multipart body with text fields and no file (the test client would send these urlencoded)."""
    return {"data": fields, "content_type": "multipart/form-data"}


def multipart(body: bytes, boundary: str = BOUNDARY) -> dict:
    return raw(body, f"multipart/form-data; boundary={boundary}")


def chunked(body: bytes, content_type: str = "image/tiff") -> dict:
    """A raw body sent with Transfer-Encoding: chunked, as gunicorn hands it over: no Content-Length, and
    the server marks the input as terminated."""
    return {
        "input_stream": io.BytesIO(body),
        "content_type": content_type,
        "headers": {"Transfer-Encoding": "chunked"},
        "environ_overrides": {"wsgi.input_terminated": True},
    }


def over_byte_limit() -> bytes:
    """A real, valid 16-bit TIFF over the default 20 MiB body limit but inside the default pixel limit."""
    return tiff_encode(np.tile(GRAY.astype(np.uint16) * 257, (28, 20)))  # 3360 x 3200: 21.5 MB, 10.8 MP


@dataclass(frozen=True)
class Case:
    """One request and what the service must answer.

    `code` None means accepted (200). `check` inspects the JSON body further; `config` overrides app settings.
    """

    id: str
    request: Callable[[], dict]
    status: int
    code: str | None
    decision: str
    path: str = "/predict"
    check: Callable[[dict], None] | None = None
    config: dict = field(default_factory=dict)


def size_is(width: int, height: int) -> Callable[[dict], None]:
    def check(body: dict) -> None:
        assert (body["width"], body["height"]) == (width, height), body

    return check


def frame_count_is(body: dict, count: int) -> None:
    assert body["frame_count"] == count and [f["frame"] for f in body["frames"]] == list(range(count)), body


def batch_codes(*expected: str | None) -> Callable[[dict], None]:
    """Each batch entry is a result (None) or an error with this code, in order."""

    def check(body: dict) -> None:
        got = [r["error"]["code"] if "error" in r else None for r in body["results"]]
        assert got == list(expected), got
        for result in body["results"]:
            assert ("error" in result) != ("width" in result), result

    return check


def same_mask_as_gray(body: dict) -> None:
    """A lossless re-encoding of GRAY must give GRAY's own mask (checked against the 8-bit TIFF)."""
    assert (body["width"], body["height"]) == (160, 120), body
    assert body["rle"] == REFERENCE_RLE[0], "re-encoded frame gave another mask than the 8-bit TIFF"


REFERENCE_RLE: list[str] = []  # filled once by the `reference_rle` fixture

BOMB = f"declares {BOMB_SIDE} x {BOMB_SIDE}; refused from the header, nothing decoded"

CASES = [
    # -- no file, wrong field, several files ----------------------------------------------------------
    Case("no_body", lambda: {}, 400, "missing_file", "reject"),
    Case("multipart_without_file", lambda: form_only(threshold="0.5"), 400, "missing_file", "reject"),
    Case("wrong_field_name", lambda: frame(GOOD, field_name="file"), 400, "missing_file", "reject"),
    Case("image_as_text_field", lambda: form_only(image="not a file"), 400, "missing_file", "reject"),
    Case(
        "two_files_for_image",
        lambda: {"data": {"image": [(io.BytesIO(GOOD), "a.tif"), (io.BytesIO(GOOD), "b.tif")]}},
        400,
        "multiple_files",
        "reject: one frame per /predict, several go to /predict/batch",
    ),
    # -- empty, not an image, damaged ----------------------------------------------------------------
    Case("empty_file", lambda: frame(b""), 400, "empty_image", "reject"),
    Case("empty_raw_body", lambda: raw(b"", "image/tiff"), 400, "empty_image", "reject"),
    Case(
        "text_named_tif",
        lambda: frame(b"patient notes, not pixels\n" * 20, "frame.tif"),
        415,
        "unsupported_image_format",
        "reject: the content decides, never the name",
    ),
    Case(
        "text_as_raw_image_png",
        lambda: raw(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/png"),
        415,
        "unsupported_image_format",
        "reject",
    ),
    Case(
        "pdf_named_png",
        lambda: frame(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "scan.png"),
        415,
        "unsupported_image_format",
        "reject",
    ),
    Case(
        "gif",
        lambda: frame(pil_encode(Image.fromarray(GRAY), "GIF")),
        415,
        "unsupported_image_format",
        "reject: not a scanner export format",
    ),
    Case("webp", lambda: frame(pil_encode(Image.fromarray(GRAY), "WEBP")), 415, "unsupported_image_format", "reject"),
    Case("truncated_tiff", lambda: frame(truncated(GOOD)), 400, "unreadable_image", "reject"),
    Case(
        "truncated_png",
        lambda: frame(truncated(pil_encode(Image.fromarray(GRAY), "PNG"))),
        400,
        "unreadable_image",
        "reject",
    ),
    Case(
        "truncated_jpeg",
        lambda: frame(truncated(pil_encode(Image.fromarray(GRAY), "JPEG"))),
        400,
        "unreadable_image",
        "reject (no silent grey fill of the missing half)",
    ),
    Case(
        "tiff_magic_only",
        lambda: frame(b"II*\0"),
        400,
        "unreadable_image",
        "reject: a TIFF signature with no header after it",
    ),
    Case(
        "tiff_ifd_past_the_end",
        lambda: frame(b"II*\0" + b"\xff\xff\x00\x00" + b"\0" * 64),
        400,
        "unreadable_image",
        "reject: header points outside the file",
    ),
    Case(
        "png_corrupt_pixel_data",
        lambda: frame(png_with_corrupt_data()),
        400,
        "unreadable_image",
        "reject: the compressed pixel stream is damaged",
    ),
    Case(
        "float_tiff_with_nan",
        lambda: frame(tiff_encode(np.full((40, 60), np.nan, np.float32))),
        400,
        "unreadable_image",
        "reject: NaN pixels have no grey level",
    ),
    # -- decompression bombs and size limits ---------------------------------------------------------
    Case("png_bomb", lambda: frame(png_header_only(BOMB_SIDE, BOMB_SIDE)), 413, "image_too_large", BOMB),
    Case("tiff_bomb", lambda: frame(tiff_header_only(BOMB_SIDE, BOMB_SIDE)), 413, "image_too_large", BOMB),
    Case(
        "jpeg_bomb",
        lambda: frame(jpeg_declaring(65_000, 65_000)),
        413,
        "image_too_large",
        "declares 65000 x 65000 (JPEG's maximum); refused from the header",
    ),
    Case("bmp_bomb", lambda: frame(bmp_declaring(BOMB_SIDE, BOMB_SIDE)), 413, "image_too_large", BOMB),
    Case(
        "png_10000x10000_within_byte_limit",
        lambda: frame(blank_png(10_000, 10_000)),
        413,
        "image_too_large",
        "reject: a real 100 MP image in ~100 kB; over NERVE_MAX_PIXELS, refused before decoding",
    ),
    Case(
        "real_image_over_byte_limit",
        lambda: frame(over_byte_limit()),
        413,
        "request_too_large",
        "reject: body over NERVE_MAX_UPLOAD_BYTES (20 MiB); Werkzeug stops reading at the limit",
    ),
    Case(
        "image_over_configured_pixel_limit",
        lambda: frame(GOOD),
        413,
        "image_too_large",
        "reject: NERVE_MAX_PIXELS is configurable",
        config={"MAX_PIXELS": 160 * 120 - 1},
    ),
    # -- unusual but valid images: accepted and read correctly ---------------------------------------
    Case(
        "tiff_16bit",
        lambda: frame(tiff_encode(GRAY.astype(np.uint16) * 257)),
        200,
        None,
        "accept: scaled by 65535, same mask as the 8-bit original",
        check=same_mask_as_gray,
    ),
    Case(
        "tiff_float32_unit_range",
        lambda: frame(tiff_encode((GRAY / 255.0).astype(np.float32))),
        200,
        None,
        "accept: floats in [0, 1] kept as they are",
        check=same_mask_as_gray,
    ),
    Case(
        "tiff_float32_other_range",
        lambda: frame(tiff_encode(GRAY.astype(np.float32) * 4.0 - 100.0)),
        200,
        None,
        "accept: min-max scaled (no fixed range)",
        check=size_is(160, 120),
    ),
    Case(
        "tiff_1bit",
        lambda: frame(pil_encode(Image.fromarray(GRAY > 100).convert("1"), "TIFF")),
        200,
        None,
        "accept: black 0, white 1",
        check=size_is(160, 120),
    ),
    Case(
        "tiff_rgb",
        lambda: frame(tiff_encode(np.stack([GRAY] * 3, axis=-1))),
        200,
        None,
        "accept: luminance of equal channels is the grey",
        check=same_mask_as_gray,
    ),
    Case(
        "tiff_multipage",
        lambda: frame(multipage_tiff()),
        200,
        None,
        "accept: the first page (frames of cine loops are the batch endpoint's job)",
        check=size_is(160, 120),
    ),
    Case(
        "png_16bit",
        lambda: frame(pil_encode(Image.fromarray(GRAY.astype(np.uint16) * 257), "PNG")),
        200,
        None,
        "accept: 16-bit scale",
        check=same_mask_as_gray,
    ),
    Case(
        "png_rgba",
        lambda: frame(pil_encode(Image.fromarray(np.dstack([GRAY] * 3 + [255 - GRAY])), "PNG")),
        200,
        None,
        "accept: alpha ignored (carries no anatomy)",
        check=same_mask_as_gray,
    ),
    Case(
        "png_gray_alpha",
        lambda: frame(pil_encode(Image.fromarray(GRAY).convert("LA"), "PNG")),
        200,
        None,
        "accept: alpha ignored",
        check=same_mask_as_gray,
    ),
    Case(
        "png_palette",
        lambda: frame(pil_encode(Image.fromarray(GRAY).convert("P"), "PNG")),
        200,
        None,
        "accept: palette mapped to grey",
        check=size_is(160, 120),
    ),
    Case(
        "jpeg_cmyk",
        lambda: frame(pil_encode(Image.fromarray(GRAY).convert("CMYK"), "JPEG")),
        200,
        None,
        "accept: converted to RGB, then luminance",
        check=size_is(160, 120),
    ),
    Case(
        "one_by_one",
        lambda: frame(tiff_encode(np.array([[128]], np.uint8))),
        200,
        None,
        "accept: resized to the network's input and back; a 1-pixel mask",
        check=size_is(1, 1),
    ),
    Case(
        "one_row",
        lambda: frame(pil_encode(Image.fromarray(GRAY[:1]), "PNG")),
        200,
        None,
        "accept",
        check=size_is(160, 1),
    ),
    Case(
        "filename_path_traversal",
        lambda: frame(GOOD, "../../../../etc/passwd"),
        200,
        None,
        "accept: the client's filename is never read, so never used on disk",
        check=size_is(160, 120),
    ),
    Case(
        "filename_with_nul",
        lambda: frame(GOOD, "frame\0.tif"),
        200,
        None,
        "accept: filename never read",
        check=size_is(160, 120),
    ),
    Case(
        "filename_absolute_and_long",
        lambda: frame(GOOD, "/" + "a" * 4000 + ".tif"),
        200,
        None,
        "accept: filename never read",
        check=size_is(160, 120),
    ),
    Case(
        "raw_body_declared_png_is_tiff",
        lambda: raw(GOOD, "image/png"),
        200,
        None,
        "accept: the bytes decide the format, not the declared type",
        check=size_is(160, 120),
    ),
    # -- not multipart, wrong Content-Type, broken multipart -----------------------------------------
    Case("text_plain_body", lambda: raw(b"hello", "text/plain"), 415, "unsupported_media_type", "reject"),
    Case(
        "json_body",
        lambda: raw(b'{"image": "aGVsbG8="}', "application/json"),
        415,
        "unsupported_media_type",
        "reject: no base64-in-JSON input",
    ),
    Case(
        "urlencoded_body",
        lambda: raw(b"image=abc", "application/x-www-form-urlencoded"),
        415,
        "unsupported_media_type",
        "reject",
    ),
    Case(
        "octet_stream_body",
        lambda: raw(GOOD, "application/octet-stream"),
        415,
        "unsupported_media_type",
        "reject: send image/* or multipart",
    ),
    Case(
        "multipart_without_boundary",
        lambda: raw(b"--x\r\n\r\n", "multipart/form-data"),
        400,
        "missing_file",
        "reject: no parts can be read",
    ),
    Case("multipart_garbage", lambda: multipart(b"\x00\xff" * 500), 400, "missing_file", "reject"),
    Case(
        "multipart_unterminated",
        lambda: multipart(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="f.tif"\r\n\r\n'.encode()
            + GOOD[:1000]
        ),
        400,
        "missing_file",
        "reject: the part never ends",
    ),
    # -- parameters ----------------------------------------------------------------------------------
    *[
        Case(
            f"threshold_{name}",
            lambda value=value: frame(GOOD, threshold=value),
            400,
            "invalid_parameter",
            "reject: threshold must lie strictly between 0 and 1",
        )
        for name, value in [
            ("minus_1", "-1"),
            ("2", "2"),
            ("nan", "NaN"),
            ("abc", "abc"),
            ("inf", "inf"),
            ("0", "0"),
            ("1", "1"),
            ("overflow", "1e999"),
            ("long_garbage", "0.5" + "x" * 10_000),
        ]
    ],
    Case(
        "threshold_in_query_of_raw_body",
        lambda: raw(GOOD, "image/tiff"),
        400,
        "invalid_parameter",
        "reject",
        path="/predict?threshold=-0.5",
    ),
    Case(
        "include_unknown",
        lambda: frame(GOOD, include="mask_png,everything"),
        400,
        "invalid_parameter",
        "reject: the message lists the valid names",
    ),
    Case("include_path_like", lambda: frame(GOOD, include="../../etc/passwd"), 400, "invalid_parameter", "reject"),
    Case(
        "huge_form_field",
        lambda: frame(GOOD, include="x" * 2_000_000),
        413,
        "request_too_large",
        "reject: a form field over 500 kB",
    ),
    Case(
        "too_many_form_parts",
        lambda: {"data": {"image": (io.BytesIO(GOOD), "f.tif"), **{f"f{i}": "x" for i in range(1500)}}},
        413,
        "request_too_large",
        "reject: more than 1000 multipart parts",
    ),
    # -- methods and routes --------------------------------------------------------------------------
    Case("get_predict", lambda: {"method": "GET"}, 405, "method_not_allowed", "reject"),
    Case("put_predict", lambda: {"method": "PUT", **raw(GOOD, "image/tiff")}, 405, "method_not_allowed", "reject"),
    Case("unknown_route", lambda: frame(GOOD), 404, "not_found", "reject", path="/admin"),
    # -- the batch endpoint --------------------------------------------------------------------------
    Case(
        "batch_too_many_files",
        lambda: files(*[GOOD] * 3),
        400,
        "too_many_images",
        "reject the whole request: NERVE_MAX_BATCH",
        path="/predict/batch",
        config={"MAX_BATCH": 2},
    ),
    Case(
        "batch_one_bad_among_good",
        lambda: files(GOOD, b"not an image", GOOD),
        200,
        None,
        "accept: each file answered in place, the bad one with its own error",
        path="/predict/batch",
        check=batch_codes(None, "unsupported_image_format", None),
    ),
    Case(
        "batch_bomb_truncated_and_empty_among_good",
        lambda: files(png_header_only(BOMB_SIDE, BOMB_SIDE), GOOD, truncated(GOOD), b""),
        200,
        None,
        "accept: the bomb refused from its header, the others answered",
        path="/predict/batch",
        check=batch_codes("image_too_large", None, "unreadable_image", "empty_image"),
    ),
    Case("batch_no_files", lambda: form_only(threshold="0.5"), 400, "missing_file", "reject", path="/predict/batch"),
    Case("batch_field_image_not_images", lambda: frame(GOOD), 400, "missing_file", "reject", path="/predict/batch"),
    Case(
        "batch_raw_body",
        lambda: raw(GOOD, "image/tiff"),
        415,
        "unsupported_media_type",
        "reject: a batch is multipart only",
        path="/predict/batch",
    ),
    Case(
        "batch_bad_threshold",
        lambda: files(GOOD, threshold="2"),
        400,
        "invalid_parameter",
        "reject",
        path="/predict/batch",
    ),
    # -- round two: structure, layout, framing, answers (docs/reliability.md, "Hardening, round two") ---------
    Case(
        "loop_tiny_first_page_then_large_pages",
        lambda: frame(tiff_growing_pages(1, 100, 6), frames="all"),
        413,
        "too_many_frames",
        "reject: every page is charged to the loop's pixel budget before it is decoded, not page 0 x the count",
        config={"MAX_PIXELS": 10_000},
    ),
    Case(
        "tiff_tile_larger_than_image",
        lambda: frame(tiff_tile_larger_than_image()),
        413,
        "image_too_large",
        "reject: a 16 x 16 image in a 32768 x 32768 tile; tile sizes are checked before any allocation",
    ),
    Case(
        "tiff_million_strip_entries",
        lambda: frame(tiff_million_strips()),
        400,
        "unreadable_image",
        "reject: more strip entries than the image has rows, refused before the tables are read",
    ),
    Case(
        "tiff_directory_loop",
        lambda: frame(tiff_directory_loop(), frames="all"),
        400,
        "unreadable_image",
        "reject: directories that point back at each other",
    ),
    Case(
        "jpeg_thousands_of_scans",
        lambda: frame(jpeg_with_scans(2000), "frame.jpg"),
        400,
        "unreadable_image",
        "reject: over 100 scans, each a pass over the whole image; counted before decoding",
    ),
    Case(
        "png_70000_chunks",
        lambda: frame(png_with_chunks(70_000), "frame.png"),
        400,
        "unreadable_image",
        "reject: over 65536 chunks, counted from their length fields before decoding",
    ),
    Case(
        "apng_two_fctl_in_a_row",
        lambda: frame(apng_two_fctl_in_a_row(), "loop.png", frames="all"),
        400,
        "unreadable_image",
        "reject: a damaged frame sequence (Pillow's seek raised, uncaught, before)",
    ),
    Case(
        "apng_frame_outside_canvas",
        lambda: frame(apng_frame_outside_canvas(), "loop.png", frames="all"),
        400,
        "unreadable_image",
        "reject: a frame placed beyond the canvas",
    ),
    Case(
        "apng_loop",
        lambda: frame(apng(), "loop.png", frames="all"),
        200,
        None,
        "accept: an animated PNG's frames, in order",
        check=lambda body: frame_count_is(body, 3),
    ),
    Case(
        "png_side_over_limit",
        lambda: frame(blank_png(20_000, 2), "wide.png"),
        413,
        "image_too_large",
        "reject: 20000 x 2 is inside the pixel limit, but no side may pass 16384 (libpng cannot write a row "
        "over 1,000,000 pixels, so the mask PNG would fail after all the work)",
    ),
    Case(
        "gif_loop",
        lambda: frame(gif_loop(), "loop.gif", frames="all"),
        415,
        "unsupported_image_format",
        "reject: the format is checked before any decoder opens the file (a GIF's frames are never walked)",
    ),
    Case(
        "dicom_jpeg_larger_than_rows_columns",
        lambda: frame(dicom_jpeg_larger_than_header(), "frame.dcm"),
        400,
        "unreadable_image",
        "reject: the embedded JPEG is 320 x 240 while Rows x Columns say 16 x 16; checked before decoding",
    ),
    Case(
        "chunked_body_over_byte_limit",
        lambda: chunked(GOOD),
        413,
        "request_too_large",
        "reject: a chunked body (no Content-Length) over the limit; it was cut silently at the limit before",
        config={"MAX_CONTENT_LENGTH": 1000},
    ),
    Case(
        "chunked_body_within_byte_limit",
        lambda: chunked(GOOD),
        200,
        None,
        "accept: chunked framing itself is fine",
        check=same_mask_as_gray,
    ),
    Case(
        "loop_answer_over_response_limit",
        lambda: frame(multipage_tiff(4), frames="all", include="mask_png,overlay_png,probability_png,image_png"),
        413,
        "response_too_large",
        "reject: every PNG field of a loop; the answer is bounded by NERVE_MAX_RESPONSE_BYTES (64 MiB)",
        config={"MAX_RESPONSE_BYTES": 20_000},
    ),
]


@pytest.fixture(scope="module", autouse=True)
def reference_rle(app):
    """GRAY's mask as the 8-bit TIFF gives it; lossless re-encodings must match it."""
    response = app.test_client().post("/predict", data={"image": (io.BytesIO(GOOD), "f.tif")})
    assert response.status_code == 200
    REFERENCE_RLE[:] = [response.get_json()["rle"]]


@pytest.fixture
def disk_writes(app, monkeypatch) -> list[str]:
    """Every file the app opens for writing through Python while it handles a request (uploads must stay
    in memory). Only the app's own handling counts: the test client spools large bodies it builds."""
    writes: list[str] = []
    handling = [False]
    real_open, real_os_open, real_wsgi_app = builtins.open, os.open, app.wsgi_app

    def recording_open(file, mode="r", *args, **kwargs):
        if handling[0] and any(flag in mode for flag in "wax+"):
            writes.append(str(file))
        return real_open(file, mode, *args, **kwargs)

    def recording_os_open(path, flags, *args, **kwargs):
        if handling[0] and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            writes.append(str(path))
        return real_os_open(path, flags, *args, **kwargs)

    def handled(environ, start_response):
        handling[0] = True
        try:
            return real_wsgi_app(environ, start_response)
        finally:
            handling[0] = False

    monkeypatch.setattr(builtins, "open", recording_open)
    monkeypatch.setattr(io, "open", recording_open)
    monkeypatch.setattr(os, "open", recording_os_open)
    monkeypatch.setattr(app, "wsgi_app", handled)
    return writes


@pytest.fixture
def no_pixel_decoding(app, monkeypatch) -> list[str]:
    """Records any attempt to decode pixels (Pillow's load, tifffile's asarray). The spy sees only this
    process, so the app decodes in the request's own thread meanwhile (the header checks are the same code)."""
    monkeypatch.setitem(app.config, "DECODE_ISOLATION", False)
    attempts: list[str] = []
    real_load, real_asarray = ImageFile.ImageFile.load, tifffile.TiffPage.asarray

    def load(self, *args, **kwargs):
        attempts.append(f"Pillow load of {self.format} {self.size}")
        return real_load(self, *args, **kwargs)

    def asarray(self, *args, **kwargs):
        attempts.append(f"tifffile asarray of {self.shape}")
        return real_asarray(self, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", asarray)
    return attempts


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.data[:300])
    assert response.mimetype == "application/json", response.data[:300]
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}, body
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str) and 0 < len(message) <= 1000, message
    assert "Traceback" not in message and 'File "' not in message


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input(app, client, monkeypatch, disk_writes, case: Case):
    kwargs = case.request()
    method = kwargs.pop("method", "POST")
    with monkeypatch.context() as settings:
        for key, value in case.config.items():
            settings.setitem(app.config, key, value)
        response = client.open(case.path, method=method, **kwargs)
    if case.code is None:
        assert response.status_code == case.status == 200, (response.status_code, response.data[:300])
        case.check(response.get_json())
    else:
        assert_error(response, case.status, case.code)
    assert not disk_writes, f"the request wrote files: {disk_writes}"

    good = client.post("/predict", data={"image": (io.BytesIO(GOOD), "frame.tif")})
    assert good.status_code == 200 and good.get_json()["width"] == 160, "the next good request failed"


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.code == "image_too_large" and "bomb" in c.id], ids=lambda c: c.id
)
def test_bombs_are_refused_without_decoding(client, no_pixel_decoding, case: Case):
    """No pixel buffer is ever allocated for a bomb: the size comes from the header alone."""
    response = client.post(case.path, **case.request())
    assert_error(response, 413, "image_too_large")
    assert not no_pixel_decoding, no_pixel_decoding


def test_a_good_frame_is_decoded(client, no_pixel_decoding):
    """The spy above does see a decode, so its silence on the bombs means something."""
    assert client.post("/predict", **frame(GOOD)).status_code == 200
    assert no_pixel_decoding


def test_the_table_has_at_least_40_refusals():
    assert len({c.id for c in CASES}) == len(CASES)
    assert sum(c.code is not None for c in CASES) >= 40


def test_reliability_doc_lists_every_case():
    """docs/reliability.md's table has one row per case, with the same status and code."""
    doc = (ROOT / "docs" / "reliability.md").read_text()
    rows = {
        m.group(1): (int(m.group(2)), m.group(3))
        for m in re.finditer(r"^\| `([a-z0-9_]+)` \| (\d{3}) \| `?([a-z_]+|-)`? \|", doc, flags=re.M)
    }
    expected = {c.id: (c.status, c.code or "-") for c in CASES}
    assert rows == expected, {k: (rows.get(k), v) for k, v in expected.items() if rows.get(k) != v}


def reliability_table() -> str:
    """The Markdown table docs/reliability.md carries (regenerate: python -m tests.app.test_hostile_inputs)."""
    lines = ["| case | status | code | decision |", "| --- | --- | --- | --- |"]
    for case in CASES:
        endpoint = "" if case.path == "/predict" else f" (`{case.path}`)"
        lines.append(
            f"| `{case.id}` | {case.status} | {f'`{case.code}`' if case.code else '-'} | {case.decision}{endpoint} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(reliability_table())
