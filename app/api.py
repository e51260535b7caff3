"""The JSON API for programs: /predict (one frame, or a whole cine loop with frames=all), /predict/batch,
health, model card and the OpenAPI document.

It is exempt from CSRF (clients are programs, not browsers holding a session) and guarded by an optional
bearer token instead, the only credential it takes: the pages call their own endpoints (app/page_api.py).
docs/api.md is the contract.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from app.errors import error_response
from app.inference import analyse, analyse_batch, analyse_loop, request_limits
from app.metrics import note_answers
from app.model_service import current_service, get_segmenter
from app.openapi import openapi_spec
from app.options import request_options
from app.security import token_required
from app.uploads import batch_images, single_image

bp = Blueprint("api", __name__)

#: metadata.json keys, at any depth, that name the exact software that built the model (`versions`: Keras, its
#: backend, Python, NumPy; `backend` under `training` and its `fine_tuned_from`). They tell an attacker which
#: known flaws to try and no client needs them, so /api/model leaves them out; the model card keeps them.
LIBRARY_VERSION_KEYS = frozenset({"versions", "backend"})


def without_library_versions(value: object) -> object:
    """`value` (metadata.json or a part of it) without the LIBRARY_VERSION_KEYS entries, at any depth."""
    if isinstance(value, dict):
        return {key: without_library_versions(item) for key, item in value.items() if key not in LIBRARY_VERSION_KEYS}
    if isinstance(value, list):
        return [without_library_versions(item) for item in value]
    return value


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    service = current_service()
    if not service.ready:
        return error_response("model_not_ready", service.not_ready_reason)
    return jsonify(status="ready", model=service.segmenter.info, runtime=service.segmenter.runtime)


@bp.get("/api/model")
def model_card():
    service = current_service()
    config = current_app.config
    return jsonify(
        model=service.segmenter.info,
        runtime=service.segmenter.runtime,
        metadata=without_library_versions(service.metadata),
        limits={
            "max_upload_bytes": config["MAX_CONTENT_LENGTH"],
            "max_pixels": config["MAX_PIXELS"],
            "max_batch": config["MAX_BATCH"],
            "max_frames": config["MAX_FRAMES"],
        },
    )


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_spec(current_app.config))


def answer_predict() -> Response:
    """The answer to a /predict request: one frame, or the whole loop with frames=all (the landing page's
    endpoint answers through it too, so the page shows exactly what a program gets)."""
    segmenter = get_segmenter()
    options = request_options(request)
    data = single_image(request)
    if options.all_frames:
        window = options.smoothing or current_app.config["CINE_SMOOTHING"]
        loop = analyse_loop(segmenter, data, options, request_limits(), window)
        note_answers("loop", loop["frames"])
        return jsonify(loop)
    result = analyse(segmenter, data, options, request_limits())
    note_answers("single", [result])
    return jsonify(result)


@bp.post("/predict")
@token_required
def predict():
    return answer_predict()


@bp.post("/predict/batch")
@token_required
def predict_batch():
    segmenter = get_segmenter()
    options = request_options(request)
    blobs = batch_images(request, current_app.config["MAX_BATCH"])
    results = analyse_batch(segmenter, blobs, options, request_limits())
    note_answers("batch", results)
    return jsonify(results=results)
