"""Request IDs: one per request, echoed in the `X-Request-ID` header, every error body and the access log.

A client (or nginx in front, deploy/nginx.conf.template) may send its own `X-Request-ID` so that its logs and
ours name the request alike; it is used when it is 1-128 characters of `[A-Za-z0-9._-]`, which is what tracing
proxies and load balancers send (UUIDs, hex, dotted trace ids) and what is safe to write verbatim into a JSON
body and a log line. Anything else, or none, is replaced by a new uuid4 hex rather than refused: the id is for
finding a request afterwards, and failing a prediction over it would help no one.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
VALID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def request_id() -> str:
    """The current request's id, made on first use so that even a hook that fails before any other (CSRF,
    routing) answers with it."""
    if "request_id" not in g:
        given = request.headers.get(HEADER, "")
        g.request_id = given if VALID.fullmatch(given) else uuid.uuid4().hex
    return g.request_id


def echo_request_id(response: Response) -> Response:
    response.headers[HEADER] = request_id()
    return response


def init_app(app: Flask) -> None:
    app.after_request(echo_request_id)
