"""Live mode: the nerve outlined on a live ultrasound feed (a capture card, a shared scanner window, a video file).

The page (templates/live.html, static/live.js) grabs frames in the browser and posts each one here, one at a
time. It authenticates as a page, never with the API token: flask-wtf's CSRF token bound to the page's session
cookie, plus a same-origin check, so it keeps working with NERVE_API_TOKEN set and no user ever types the
token into a page. The answer is `analyse`'s, the very code path of /predict, for the fields the page asks for;
the app's upload limit, pixel limit and request time budget apply as they do there.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, jsonify, render_template, request
from flask_wtf.csrf import CSRFError, generate_csrf

from app.errors import ApiError, error_response
from app.imaging import OUTLINE_PX, OVERLAY_HEX, OVERLAY_OPACITY
from app.inference import analyse, request_limits
from app.model_service import current_service, get_segmenter
from app.options import request_options
from app.uploads import single_image

bp = Blueprint("live", __name__)


@bp.get("/live")
def page():
    return render_template(
        "live.html",
        overlay_colour=OVERLAY_HEX,
        overlay_opacity=OVERLAY_OPACITY,
        outline_px=OUTLINE_PX,
        model_threshold=current_service().metadata["postprocessing"]["threshold"],
    )


def _same_origin() -> bool:
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


@bp.before_request
def refuse_cross_origin() -> None:
    if request.method == "POST" and not _same_origin():
        raise ApiError("cross_origin", "the live endpoint answers only this service's own live page")


@bp.get("/live/csrf")
def fresh_csrf_token():
    """A new token for the caller's own session: a live session outlasts a token's lifetime (one hour)."""
    return jsonify(csrf_token=generate_csrf())


@bp.post("/live/predict")
def predict():
    """One frame of the live feed: the /predict answer for the fields in `include`; never a loop."""
    options = request_options(request)
    if options.all_frames:
        raise ApiError("invalid_parameter", "the live endpoint answers one frame per request; drop 'frames'")
    data = single_image(request)
    return jsonify(analyse(get_segmenter(), data, options, request_limits()))


@bp.errorhandler(CSRFError)
def csrf_failed(exc: CSRFError):
    """JSON for the page's script, which fetches a fresh token once on this code before giving up."""
    return error_response(
        "csrf_failed",
        "the page's session has expired or the request did not come from the live page; reload the page",
    )
