"""Getting image bytes out of a request, in memory only.

Uploads are patients' images: they are never written to disk (Werkzeug spools files over 500 kB to a
temporary file by default) and their client-side filenames are never read. MAX_CONTENT_LENGTH bounds the
memory a request can take, however the body is framed: Werkzeug refuses a declared Content-Length over it,
but cuts a chunked body (no Content-Length) silently at the limit, so such a body is read here up to one byte
past the limit and refused whole.
"""

from __future__ import annotations

import io

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property

from app.errors import ApiError
from model.decode.formats import MIME_TYPES

IMAGE_FIELD = "image"
BATCH_FIELD = "images"
#: Content-Types a /predict body may be sent as raw: any image type (the bytes, not the label, decide how
#: it is decoded) and the accepted formats' own types that are not image/* (DICOM, clips).
RAW_BODY_TYPES = ("image/*", *(mime for mime in MIME_TYPES if not mime.startswith("image/")))


def is_raw_body_type(mimetype: str) -> bool:
    return mimetype.startswith("image/") or mimetype in RAW_BODY_TYPES


def read_bounded(stream: io.RawIOBase, limit: int) -> bytes:
    """The whole stream, or RequestEntityTooLarge as soon as it holds more than `limit` bytes."""
    chunks, total = [], 0
    while chunk := stream.read(min(64 * 1024, limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise RequestEntityTooLarge()
    return b"".join(chunks)


class InMemoryRequest(Request):
    """A Flask request whose body is bounded however it is framed, and whose multipart file parts are kept in
    memory."""

    @cached_property
    def stream(self) -> io.IOBase:
        # Everything that reads the body (get_data, the form parser) goes through this stream.
        terminated = "wsgi.input_terminated" in self.environ  # the server ends the body: chunked framing
        if self.content_length is None and terminated and self.max_content_length is not None:
            return io.BytesIO(read_bounded(self.environ["wsgi.input"], self.max_content_length))
        return super().stream

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> io.BytesIO:
        return io.BytesIO()


def _missing(field: str) -> ApiError:
    return ApiError("missing_file", f"no file in the multipart field '{field}'")


def _not_multipart(request: Request, field: str) -> ApiError:
    if not request.mimetype and not request.content_length:
        return _missing(field)
    return ApiError(
        "unsupported_media_type",
        f"Content-Type '{request.mimetype}' is not multipart/form-data with the field '{field}'"
        + (f" or one of {', '.join(RAW_BODY_TYPES)}" if field == IMAGE_FIELD else ""),
    )


def single_image(request: Request) -> bytes:
    """The bytes of the one image of a /predict request: multipart field `image`, or a raw body of one of
    RAW_BODY_TYPES."""
    if is_raw_body_type(request.mimetype):
        return request.get_data(cache=False)
    if request.mimetype != "multipart/form-data":
        raise _not_multipart(request, IMAGE_FIELD)
    files = request.files.getlist(IMAGE_FIELD)
    if not files:
        raise _missing(IMAGE_FIELD)
    if len(files) > 1:
        raise ApiError(
            "multiple_files", f"{len(files)} files in the field '{IMAGE_FIELD}'; send one, or use /predict/batch"
        )
    return files[0].read()


def batch_images(request: Request, max_count: int) -> list[bytes]:
    """The bytes of every file in the multipart field `images`, in order."""
    if request.mimetype != "multipart/form-data":
        raise _not_multipart(request, BATCH_FIELD)
    files = request.files.getlist(BATCH_FIELD)
    if not files:
        raise _missing(BATCH_FIELD)
    if len(files) > max_count:
        raise ApiError("too_many_images", f"{len(files)} files sent; the limit is {max_count} per request")
    return [file.read() for file in files]
