"""Response headers and API authentication.

The page runs only its own script and stylesheet (no inline code, no CDN), so the CSP can forbid everything
else; images are data:/blob: URLs made from API responses. The referrer stays within the site, where
flask-wtf's HTTPS CSRF check needs it. Results describe patients' images, so nothing the service returns
may be cached. HSTS is sent only when the deployment says it is served over HTTPS (NERVE_HTTPS): the app
usually sits behind a TLS-terminating proxy and cannot tell from the request, and HSTS on a plain-HTTP site
would lock browsers out of it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps

from flask import Response, current_app, request

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

#: A year, for this host and its subdomains: the usual value for a site that is only ever served over HTTPS.
STRICT_TRANSPORT_SECURITY = "max-age=31536000; includeSubDomains"


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if current_app.config["HTTPS"]:
        response.headers.setdefault("Strict-Transport-Security", STRICT_TRANSPORT_SECURITY)
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _bearer_token_matches(expected: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest takes as long for a near miss as for a wild guess, so timing reveals nothing.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


def token_required(view: Callable) -> Callable:
    """Require `Authorization: Bearer <NERVE_API_TOKEN>` when that variable is set; open otherwise.

    The bearer token is the only credential: the pages' CSRF tokens are public to anyone who loads a page, so
    they open only the pages' own endpoints (app/page_api.py), never the API.
    """

    @wraps(view)
    def guarded(*args, **kwargs):
        expected = current_app.config["API_TOKEN"]
        if expected and not _bearer_token_matches(expected):
            raise ApiError(
                "unauthorized",
                "send 'Authorization: Bearer <token>' with the API token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return view(*args, **kwargs)

    return guarded
