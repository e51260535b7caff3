"""Response headers and API authentication.

The page runs only its own script and stylesheet (no inline code, no CDN), so the CSP can forbid everything
else; images are data:/blob: URLs made from API responses. The referrer stays within the site, where
flask-wtf's HTTPS CSRF check needs it. Results describe patients' images, so nothing the service returns
may be cached.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps

from flask import Response, current_app, request
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms import ValidationError

from app.errors import ApiError

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src blob: mediastream:",  # the live page plays a local file (blob:) or a camera stream
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _bearer_token_matches(expected: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest takes as long for a near miss as for a wild guess, so timing reveals nothing.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


def _page_csrf_token_valid() -> bool:
    """The landing page's own fetch() calls prove their origin with the form's CSRF token instead."""
    token = request.headers.get("X-CSRFToken")
    if not token:
        return False
    try:
        validate_csrf(token)
    except (ValidationError, CSRFError):
        return False
    return True


def token_required(view: Callable) -> Callable:
    """Require `Authorization: Bearer <NERVE_API_TOKEN>` when that variable is set; open otherwise."""

    @wraps(view)
    def guarded(*args, **kwargs):
        expected = current_app.config["API_TOKEN"]
        if expected and not (_bearer_token_matches(expected) or _page_csrf_token_valid()):
            raise ApiError(
                "unauthorized",
                "send 'Authorization: Bearer <token>' with the API token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return view(*args, **kwargs)

    return guarded
