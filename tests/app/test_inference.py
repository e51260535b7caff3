"""app/inference.py: the analyse functions under one Limits object, and the one accessor to the model service."""

from __future__ import annotations

import pytest

from app.deadline import NO_DEADLINE, Deadline
from app.errors import ApiError
from app.inference import Limits, analyse, analyse_batch, analyse_loop, request_limits
from app.model_service import EXTENSION, current_service, get_segmenter
from app.options import Options
from model.errors import ImageTooLargeError, TooManyFramesError
from tests.app.conftest import tiff_bytes
from tests.conftest import phantom
from tests.media import loop, multipage_tiff_bytes

FRAME = tiff_bytes(phantom(120, 160))
ROOMY = Limits(max_pixels=10**6, max_frames=10)


def test_limits_bound_each_analysis(app):
    with app.app_context():
        segmenter = get_segmenter()
    options = Options(threshold=0.515)
    assert analyse(segmenter, FRAME, options, ROOMY)["width"] == 160
    with pytest.raises(ImageTooLargeError):
        analyse(segmenter, FRAME, options, Limits(max_pixels=100, max_frames=10))
    results = analyse_batch(segmenter, [FRAME, FRAME], options, Limits(max_pixels=120 * 160 + 1, max_frames=1))
    assert [r["rle"] for r in results] == [analyse(segmenter, FRAME, options, ROOMY)["rle"]] * 2
    loop_file = multipage_tiff_bytes(loop(3))
    assert analyse_loop(segmenter, loop_file, options, ROOMY, window=1)["frame_count"] == 3
    with pytest.raises(TooManyFramesError):
        analyse_loop(segmenter, loop_file, options, Limits(max_pixels=10**6, max_frames=2), window=1)


def test_a_spent_deadline_stops_the_analysis(app):
    with app.app_context():
        segmenter = get_segmenter()
    spent = Deadline(-1.0)
    with pytest.raises(ApiError) as caught:
        analyse(segmenter, FRAME, Options(), Limits(max_pixels=10**6, max_frames=10, deadline=spent))
    assert caught.value.code == "request_timeout"


def test_request_limits_come_from_the_config_and_the_requests_deadline(app, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_PIXELS", 1234)
    monkeypatch.setitem(app.config, "MAX_FRAMES", 7)
    with app.test_request_context("/predict", method="POST"):
        app.preprocess_request()  # the before_request hook starts the deadline
        limits = request_limits()
    assert (limits.max_pixels, limits.max_frames) == (1234, 7)
    assert limits.deadline is not NO_DEADLINE and limits.deadline.seconds == app.config["REQUEST_TIMEOUT"]
    with pytest.raises(AttributeError):
        limits.max_pixels = 1  # frozen


def test_init_app_registers_the_one_service_both_blueprints_reach(app):
    with app.app_context():
        service = current_service()
        assert service is app.extensions[EXTENSION]
        assert get_segmenter() is service.segmenter
        assert service.ready and service.model_dir == app.config["MODEL_DIR"]
