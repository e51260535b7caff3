"""Page endpoints: the JSON the service's own pages fetch, authenticated as a page and never with the API token.

Programs call the API (/predict, /predict/batch), which takes only the bearer token when NERVE_API_TOKEN is
set. The pages' scripts hold another credential: flask-wtf's CSRF token, bound to the page's session cookie
and sent in `X-CSRFToken`, plus a same-origin check. Neither is accepted in place of the other: a token scraped
from the public page opens no API, and no one ever types the API token into a page.

`page_blueprint()` makes a blueprint whose POSTs are guarded that way (the live page's, app/live.py, is one).
This module's own serves the landing page's script (static/app.js): POST /page/predict, /predict's answer for
one frame or, with frames=all, a loop; and GET /page/csrf.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, jsonify, request
from flask_wtf.csrf import CSRFError, generate_csrf

from app.api import answer_predict
from app.errors import ApiError, error_response


def same_origin() -> bool:
    """True unless the browser says the request comes from another site.

    Browsers send `Sec-Fetch-Site` and `Origin` with every fetch() POST and never let a page forge them. Only
    the host is compared with Origin: behind a TLS-terminating proxy the scheme the app sees is http while
    the page's is https. A client that sends neither is not a browser page and still needs the CSRF token.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return False
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def refuse_cross_origin() -> None:
    if request.method == "POST" and not same_origin():
        raise ApiError("cross_origin", "page endpoints answer only this service's own pages")


def csrf_failed(exc: CSRFError):
    """JSON for the page's script, which fetches a fresh token once on this code before giving up."""
    return error_response(
        "csrf_failed",
        "the page's session has expired or the request did not come from this service's page; reload the page",
    )


def fresh_csrf_token():
    """A new token for the caller's own session: a page can stay open longer than a token lives (one hour)."""
    return jsonify(csrf_token=generate_csrf())


def page_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint whose POSTs are page calls: CSRF-checked by the app's CSRFProtect (never exempt it), refused
    when cross-origin, and answered in JSON when the CSRF check fails."""
    blueprint = Blueprint(name, import_name)
    blueprint.before_request(refuse_cross_origin)
    blueprint.register_error_handler(CSRFError, csrf_failed)
    return blueprint


bp = page_blueprint("page_api", __name__)
bp.add_url_rule("/page/csrf", view_func=fresh_csrf_token)


@bp.post("/page/predict")
def predict():
    """The landing page's script: /predict's answer for the fields it asks, one frame or a whole loop."""
    return answer_predict()
