"""One error shape for every failure: `{"error": {"code", "message"}}`, never an HTML page or a traceback.

Codes are stable snake_case strings that clients branch on (docs/api.md lists them); messages are for people.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from model.preprocessing import ImageError

#: Codes for errors Werkzeug raises itself (routing, body limits); ours raise ApiError with their own code.
HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """A request the service refuses, with the status and code the client sees.

    It has the same `status`, `code` and `message` attributes as model.preprocessing.ImageError, so both are
    reported the same way.
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify(error_body(code, message)), status


def describe_http_error(exc: HTTPException) -> tuple[int, str, str]:
    """Status, code and a plain message for a Werkzeug exception (its description is written for HTML)."""
    status = exc.code or 500
    code = HTTP_ERROR_CODES.get(status, "http_error")
    if status == 413:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return status, code, f"the request body or a form field is over the limit ({limit} bytes in all)"
    return status, code, exc.description or exc.name


def register_json_errors(app: Flask) -> None:
    """Handlers that turn every exception into the JSON error shape (pages register their own)."""

    @app.errorhandler(ApiError)
    @app.errorhandler(ImageError)
    def known_error(exc: ApiError | ImageError):
        response, status = error_response(exc.status, exc.code, exc.message)
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
        return error_response(500, "internal_error", "the service failed on this request; it has been logged")
