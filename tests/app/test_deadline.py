"""The per-request time budget: a request over NERVE_REQUEST_TIMEOUT stops between stages with a clean
503 request_timeout, and the service goes on serving. Time is moved forward by hand, never waited for."""

from __future__ import annotations

import io
import re

import pytest

import app.api as api
import app.deadline as deadline_module
import app.inference as inference
from app.deadline import Deadline
from app.errors import ApiError
from tests.app.conftest import tiff_bytes
from tests.conftest import phantom
from tests.hostile import blank_png

FRAME = tiff_bytes(phantom(120, 160))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(deadline_module, "clock", fake)
    return fake


@pytest.fixture
def budget(app, monkeypatch) -> float:
    monkeypatch.setitem(app.config, "REQUEST_TIMEOUT", 5.0)
    return 5.0


def slow_stage(monkeypatch, clock: FakeClock, target, name: str, seconds: float, on_call: int = 1) -> None:
    """Make the `on_call`-th call of target.name take `seconds` of (fake) time."""
    real = getattr(target, name)
    calls = [0]

    def slow(*args, **kwargs):
        result = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] == on_call:
            clock.now += seconds
        return result

    monkeypatch.setattr(target, name, slow)


def assert_timeout(response, stage: str) -> None:
    assert response.status_code == 503, response.data[:300]
    error = response.get_json()["error"]
    assert error["code"] == "request_timeout" and stage in error["message"], error


def test_deadline_unit(clock):
    deadline = Deadline(2.0)
    deadline.check("decoding")
    clock.now += 2.0
    deadline.check("decoding")  # exactly at the budget is still in time
    clock.now += 0.001
    with pytest.raises(ApiError) as info:
        deadline.check("inference")
    assert (info.value.status, info.value.code) == (503, "request_timeout")
    assert "inference" in info.value.message and "2 s" in info.value.message


def test_within_budget_is_served(client, clock, budget, monkeypatch):
    slow_stage(monkeypatch, clock, inference, "decode_frames", budget - 0.5)
    assert client.post("/predict", data={"image": (io.BytesIO(FRAME), "f.tif")}).status_code == 200


def test_slow_decode_stops_before_inference(app, client, clock, budget, monkeypatch):
    segmenter = app.extensions["model_service"].segmenter
    calls = []
    monkeypatch.setattr(segmenter, "predict_many", lambda *a, **k: calls.append(a) or [])
    slow_stage(monkeypatch, clock, inference, "decode_frames", budget + 1)
    assert_timeout(client.post("/predict", data={"image": (io.BytesIO(FRAME), "f.tif")}), "before inference")
    assert not calls, "the network ran after the budget was spent"


def test_slow_inference_stops_before_encoding(app, client, clock, budget, monkeypatch):
    slow_stage(monkeypatch, clock, app.extensions["model_service"].segmenter, "predict_many", budget + 1)
    response = client.post("/predict", data=FRAME, content_type="image/tiff")
    assert_timeout(response, "before encoding")
    monkeypatch.undo()
    assert client.post("/predict", data=FRAME, content_type="image/tiff").status_code == 200


def test_slow_upload_stops_before_decoding(client, clock, budget, monkeypatch):
    slow_stage(monkeypatch, clock, api, "single_image", budget + 1)  # reading the body is the slow part
    assert_timeout(client.post("/predict", data={"image": (io.BytesIO(FRAME), "f.tif")}), "before decoding")


def test_batch_stops_between_frames_and_answers_nothing_partial(client, clock, budget, monkeypatch):
    slow_stage(monkeypatch, clock, inference, "decode_frames", budget + 1, on_call=2)
    files = [(io.BytesIO(FRAME), f"{i}.tif") for i in range(3)]
    response = client.post("/predict/batch", data={"images": files})
    assert_timeout(response, "before decoding image 3 of 3")
    assert "results" not in response.get_json()


def test_batch_stops_after_a_slow_group(app, client, clock, budget, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_PIXELS", 160 * 120)  # one frame per network call
    slow_stage(monkeypatch, clock, app.extensions["model_service"].segmenter, "predict_many", budget + 1)
    files = [(io.BytesIO(FRAME), f"{i}.tif") for i in range(3)]
    assert_timeout(client.post("/predict/batch", data={"images": files}), "before encoding")


def test_page_over_budget_shows_the_message(client, clock, budget, monkeypatch):
    page = client.get("/").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    slow_stage(monkeypatch, clock, inference, "decode_frames", budget + 1)
    response = client.post("/", data={"csrf_token": csrf, "image": (io.BytesIO(FRAME), "f.tif")})
    assert response.status_code == 503 and "budget" in response.get_data(as_text=True)


def test_loop_over_budget_stops_before_inference(client, app, clock, budget, monkeypatch):
    slow_stage(monkeypatch, clock, inference, "decode_frames", budget + 1)
    response = client.post("/predict", data={"image": (io.BytesIO(FRAME), "loop.tif"), "frames": "all"})
    assert_timeout(response, "inference")
    assert client.post("/predict", data={"image": (io.BytesIO(FRAME), "f.tif")}).status_code == 200


def test_a_decode_past_the_budget_is_stopped_in_its_helper(app, client, monkeypatch):
    """Real time, a real decoder: a maximal PNG takes far longer to decode than this budget, and the thread
    is back at once (the helper is killed), where a check between stages would wait for the decode."""
    monkeypatch.setitem(app.config, "REQUEST_TIMEOUT", 0.05)
    response = client.post("/predict", data={"image": (io.BytesIO(blank_png(4096, 4096)), "big.png")})
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "request_timeout"
    monkeypatch.setitem(app.config, "REQUEST_TIMEOUT", 30.0)
    assert client.post("/predict", data={"image": (io.BytesIO(FRAME), "f.tif")}).status_code == 200
