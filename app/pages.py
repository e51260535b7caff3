"""The landing page for people: upload a frame, see the nerve.

With JavaScript, static/app.js sends the file to the page endpoint POST /page/predict (app/page_api.py: the
/predict answer, authenticated as a page so that it never needs the API token) and draws the result on a
canvas without a reload. Without it, the form posts here (CSRF-protected by flask-wtf) and the same result is
rendered on the server from the same `analyse` call.
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from flask_wtf.file import FileField, FileRequired
from werkzeug.exceptions import HTTPException
from wtforms import StringField, ValidationError

from app.errors import ApiError, describe_http_error, status_of
from app.imaging import OUTLINE_PX, OVERLAY_HEX, OVERLAY_OPACITY
from app.inference import analyse, request_limits
from app.metrics import note_answers
from app.model_service import current_service, get_segmenter
from app.options import Options, parse_threshold
from model.decode.formats import ACCEPT_ATTRIBUTE, is_dicom
from model.errors import ImageError

bp = Blueprint("pages", __name__)

#: What the page shows: the input as PNG, the mask and overlay (also offered as downloads), the outline, and
#: the probability map its script re-thresholds and draws as a heatmap.
PAGE_INCLUDE = frozenset({"image_png", "mask_png", "overlay_png", "contours", "probability_png"})


def _threshold_is_valid(form: FlaskForm, field: StringField) -> None:
    try:
        parse_threshold(field.data)
    except ApiError as exc:
        raise ValidationError(exc.message) from None


class UploadForm(FlaskForm):
    image = FileField(
        "Ultrasound image",
        validators=[FileRequired("Choose an image file first.")],
        render_kw={"accept": ACCEPT_ATTRIBUTE},
    )
    threshold = StringField(
        "Threshold (optional)",
        validators=[_threshold_is_valid],
        render_kw={
            "type": "number",
            "min": "0.001",
            "max": "0.999",
            "step": "any",
            "inputmode": "decimal",
            "placeholder": "model default",
        },
    )


def _page(form: UploadForm, *, result: dict | None = None, error: str | None = None, status: int = 200):
    return render_template(
        "index.html",
        form=form,
        result=result,
        error=error,
        overlay_colour=OVERLAY_HEX,
        overlay_opacity=OVERLAY_OPACITY,
        outline_px=OUTLINE_PX,
        model_threshold=current_service().metadata["postprocessing"]["threshold"],
        page_include=",".join(sorted(PAGE_INCLUDE)),
    ), status


@bp.route("/", methods=["GET", "POST"])
def index():
    form = UploadForm()
    if not form.is_submitted():  # GET or HEAD
        return _page(form)
    if not form.validate_on_submit():
        messages = [message for errors in form.errors.values() for message in errors]
        return _page(form, error=" ".join(messages), status=400)
    data = form.image.data.read()
    include = PAGE_INCLUDE | {"dicom_seg"} if is_dicom(data) else PAGE_INCLUDE  # a DICOM also gets its SEG to download
    options = Options(threshold=parse_threshold(form.threshold.data), include=include)
    try:
        result = analyse(get_segmenter(), data, options, request_limits())
        note_answers("single", [result])
    except (ApiError, ImageError) as exc:
        return _page(form, error=exc.message, status=status_of(exc.code))
    return _page(form, result=result)


# Error pages get a fresh, unbound form: binding would read the request body again (which may be the
# error itself, e.g. one over the size limit).


@bp.errorhandler(CSRFError)
def csrf_error(exc: CSRFError):
    return _page(
        UploadForm(formdata=None),
        status=400,
        error="The form had expired or did not come from this page. Please choose the file and submit again.",
    )


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    _, message, status = describe_http_error(exc)
    return _page(UploadForm(formdata=None), error=message, status=status)


@bp.errorhandler(Exception)
def unexpected_error(exc: Exception):
    current_app.logger.exception("unhandled error on the page")
    return _page(
        UploadForm(formdata=None),
        status=500,
        error="The service failed on this request; it has been logged. Please try again.",
    )
