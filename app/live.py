"""Live mode: the nerve outlined on a live ultrasound feed (a capture card, a shared scanner window, a video file).

The page (templates/live.html, static/live.js) grabs frames in the browser and posts each one here, one at a
time. It authenticates as a page, never with the API token: its blueprint is a page blueprint
(app/page_api.py: session + CSRF token, same-origin check, a fresh token at /live/csrf), so it keeps working
with NERVE_API_TOKEN set and no user ever types the token into a page. The answer is `analyse`'s, the very code
path of /predict, for the fields the page asks for; the app's upload limit, pixel limit and request time budget
apply as they do there.
"""

from __future__ import annotations

from flask import jsonify, render_template, request

from app.errors import ApiError
from app.imaging import OUTLINE_PX, OVERLAY_HEX, OVERLAY_OPACITY
from app.inference import analyse, request_limits
from app.metrics import note_answers
from app.model_service import current_service, get_segmenter
from app.options import request_options
from app.page_api import fresh_csrf_token, page_blueprint
from app.uploads import single_image

bp = page_blueprint("live", __name__)
bp.add_url_rule("/live/csrf", view_func=fresh_csrf_token)


@bp.get("/live")
def page():
    return render_template(
        "live.html",
        overlay_colour=OVERLAY_HEX,
        overlay_opacity=OVERLAY_OPACITY,
        outline_px=OUTLINE_PX,
        model_threshold=current_service().metadata["postprocessing"]["threshold"],
    )


@bp.post("/live/predict")
def predict():
    """One frame of the live feed: the /predict answer for the fields in `include`; never a loop."""
    options = request_options(request)
    if options.all_frames:
        raise ApiError("invalid_parameter", "the live endpoint answers one frame per request; drop 'frames'")
    data = single_image(request)
    result = analyse(get_segmenter(), data, options, request_limits())
    note_answers("single", [result])
    return jsonify(result)
