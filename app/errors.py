"""One error shape for every failure: `{"error": {"code", "message", "request_id"}}`, never an HTML page or a
traceback.

Codes are stable snake_case strings that clients branch on; messages are for people. `ERRORS` is the one
place a code gets its HTTP status: model/ raises errors that carry only a code and a message
(model/errors.py), the app's own refusals name a code (ApiError), and both are answered with the status this
table gives. The OpenAPI error lists are generated from it, and tests/app/test_errors.py checks docs/api.md's
table and every code model/ can raise against it. Every error body carries the request's id (app/request_ids.py),
so that a client reporting an error hands over what finds it in the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, Response, current_app, has_request_context, jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from app.request_ids import request_id
from model.errors import ImageError


@dataclass(frozen=True)
class ErrorCode:
    """An error code's HTTP status and a short phrase saying when it happens (for the OpenAPI text)."""

    status: int
    when: str


ERRORS: dict[str, ErrorCode] = {
    "missing_file": ErrorCode(400, "no file in the field, or no body"),
    "multiple_files": ErrorCode(400, "more than one file in the field `image`"),
    "too_many_images": ErrorCode(400, "more files than NERVE_MAX_BATCH"),
    "invalid_parameter": ErrorCode(400, "bad threshold, include, frames or smoothing"),
    "empty_image": ErrorCode(400, "a zero-byte file or an image with no pixels"),
    "unreadable_image": ErrorCode(400, "truncated or damaged image data"),
    "bad_request": ErrorCode(400, "a malformed request"),
    "csrf_failed": ErrorCode(400, "a page endpoint without a valid CSRF token for the page's session"),
    "unauthorized": ErrorCode(401, "only when NERVE_API_TOKEN is set"),
    "cross_origin": ErrorCode(403, "a page endpoint called from another site"),
    "not_found": ErrorCode(404, "no such route"),
    "method_not_allowed": ErrorCode(405, "the Allow header lists the methods"),
    "request_too_large": ErrorCode(413, "body or form field over the byte limit"),
    "image_too_large": ErrorCode(413, "over the pixel limit"),
    "too_many_frames": ErrorCode(413, "frames=all: over the frame or loop pixel limit"),
    "response_too_large": ErrorCode(413, "the answer would be over NERVE_MAX_RESPONSE_BYTES"),
    "unsupported_media_type": ErrorCode(415, "body neither multipart nor an accepted type"),
    "unsupported_image_format": ErrorCode(415, "not an accepted format"),
    "unsupported_transfer_syntax": ErrorCode(415, "compressed DICOM this service cannot decode"),
    "internal_error": ErrorCode(500, "a bug; logged, never sent"),
    "model_not_ready": ErrorCode(503, "the model is loading or failed to load"),
    "request_timeout": ErrorCode(503, "over NERVE_REQUEST_TIMEOUT; stopped while decoding or between stages"),
}

#: Werkzeug raises its own exceptions (routing, body limits) with a status; these are the codes they answer.
HTTP_ERROR_CODES = {
    ERRORS[code].status: code
    for code in (
        "bad_request",
        "unauthorized",
        "not_found",
        "method_not_allowed",
        "request_too_large",
        "unsupported_media_type",
    )
}
#: The code of a Werkzeug status outside HTTP_ERROR_CODES (none of this service's routes leads to one).
OTHER_HTTP_ERROR = "http_error"


def status_of(code: str) -> int:
    """The HTTP status of an error code; a code missing from ERRORS is a bug, so it raises KeyError."""
    return ERRORS[code].status


def codes_with_status(status: int) -> list[str]:
    return [code for code, error in ERRORS.items() if error.status == status]


class ApiError(Exception):
    """A request the service refuses, by code (its status comes from ERRORS).

    It has the same `code` and `message` attributes as model.errors.ImageError, so both are reported the
    same way.
    """

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status_of(code)
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str) -> dict:
    """The error object; with the request's id when there is a request (the CLI and direct calls have none)."""
    error = {"code": code, "message": message}
    if has_request_context():
        error["request_id"] = request_id()
    return {"error": error}


def error_response(code: str, message: str, status: int | None = None) -> tuple[Response, int]:
    """The JSON error for a code, with the status ERRORS gives it (`status` only for Werkzeug's other codes)."""
    return jsonify(error_body(code, message)), status or status_of(code)


def describe_http_error(exc: HTTPException) -> tuple[str, str, int]:
    """Code, a plain message and status for a Werkzeug exception: the message is this service's own phrase
    for the code (Werkzeug's descriptions are written for HTML pages and may carry a parser's detail)."""
    status = exc.code or 500
    code = HTTP_ERROR_CODES.get(status, OTHER_HTTP_ERROR)
    if status == 413:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return code, f"the request body or a form field is over the limit ({limit} bytes in all)", status
    return code, ERRORS[code].when if code in ERRORS else exc.name, status


def register_json_errors(app: Flask) -> None:
    """Handlers that turn every exception into the JSON error shape (pages register their own)."""

    @app.errorhandler(ApiError)
    @app.errorhandler(ImageError)
    def known_error(exc: ApiError | ImageError):
        response, status = error_response(exc.code, exc.message)
        response.headers.update(getattr(exc, "headers", {}))
        return response, status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        response, status = error_response(*describe_http_error(exc))
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response, status

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        app.logger.exception("unhandled error")
        return error_response("internal_error", "the service failed on this request; it has been logged")
