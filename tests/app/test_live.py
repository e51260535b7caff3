"""The live page and its endpoint: CSRF and same-origin checks instead of the API token, the /predict answer for
the fields asked, and the same limits and time budget as /predict."""

from __future__ import annotations

import re

import pytest

import app.deadline as deadline_module
from tests.app.conftest import pil_bytes
from tests.conftest import phantom

FRAME = pil_bytes(phantom(120, 160), "BMP")
PREDICT = "/live/predict?include=contours"


def live_token(client) -> str:
    match = re.search(r'data-csrf="([^"]+)"', client.get("/live").get_data(as_text=True))
    assert match, "the live page carries its CSRF token"
    return match.group(1)


def post(client, token: str | None, body: bytes = FRAME, url: str = PREDICT, **headers):
    if token is not None:
        headers["X-CSRFToken"] = token
    return client.post(url, data=body, content_type="image/bmp", headers=headers)


def test_page_has_notice_controls_and_only_its_own_assets(client):
    response = client.get("/live")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "Research use only" in page and "Not a medical device" in page
    for element in ("live-start", "live-stop", "live-fps", "live-frames", "live-latency", "live-video", "live-overlay"):
        assert f'id="{element}"' in page, element
    for url in re.findall(r'(?:src|href)="(/[^"]*)"', page):
        assert client.get(url).status_code == 200, url
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/live.js" defer>']
    assert "<style" not in page and " style=" not in page and "http://" not in page and "https://" not in page
    csp = response.headers["Content-Security-Policy"]
    assert "media-src blob: mediastream:" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert 'href="/live"' in client.get("/").get_data(as_text=True), "the landing page links to live mode"


def test_answer_is_predicts_for_the_same_frame_and_fields(client):
    live = post(client, live_token(client))
    assert live.status_code == 200, live.data[:300]
    reference = client.post("/predict?include=contours", data=FRAME, content_type="image/bmp").get_json()
    answer = live.get_json()
    assert answer.pop("timing_ms").keys() == reference.pop("timing_ms").keys()
    assert answer == reference
    assert "contours" in answer and "mask_png" not in answer and "rle" not in answer


def test_threshold_and_default_fields_are_predicts(client):
    token = live_token(client)
    for query in ("?threshold=0.515", ""):
        live = post(client, token, url=f"/live/predict{query}").get_json()
        reference = client.post(f"/predict{query}", data=FRAME, content_type="image/bmp").get_json()
        live.pop("timing_ms"), reference.pop("timing_ms")
        assert live == reference, query


def test_works_with_the_api_token_set_and_never_shows_it(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "API_TOKEN", "s3cret-token")
    page = client.get("/live").get_data(as_text=True)
    assert "s3cret-token" not in page
    assert post(client, live_token(client)).status_code == 200
    assert client.post("/predict", data=FRAME, content_type="image/bmp").status_code == 401


@pytest.mark.parametrize("token", [None, "", "forged.token.value"])
def test_refused_without_a_valid_csrf_token(client, token):
    live_token(client)  # a session exists: only the token is missing or wrong
    response = post(client, token)
    assert response.status_code == 400 and response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == "csrf_failed"


def test_a_token_from_another_session_is_refused(app, client):
    other = app.test_client()
    response = post(client, live_token(other))
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "csrf_failed"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost"},
    ],
)
def test_cross_origin_is_refused_even_with_a_valid_token(client, headers):
    response = post(client, live_token(client), **headers)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "cross_origin"


def test_same_origin_browser_headers_are_accepted(client):
    headers = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    assert post(client, live_token(client), **headers).status_code == 200


def test_fresh_token_endpoint_gives_a_working_token(client):
    live_token(client)
    response = client.get("/live/csrf")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert post(client, response.get_json()["csrf_token"]).status_code == 200


@pytest.mark.parametrize(
    ("url", "body", "content_type", "status", "code"),
    [
        ("/live/predict?frames=all", FRAME, "image/bmp", 400, "invalid_parameter"),
        ("/live/predict?include=nonsense", FRAME, "image/bmp", 400, "invalid_parameter"),
        ("/live/predict?threshold=2", FRAME, "image/bmp", 400, "invalid_parameter"),
        (PREDICT, b"not an image at all", "image/bmp", 415, "unsupported_image_format"),
        (PREDICT, FRAME, "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_bad_requests_get_json_errors(client, url, body, content_type, status, code):
    response = client.post(url, data=body, content_type=content_type, headers={"X-CSRFToken": live_token(client)})
    assert response.status_code == status, response.data[:300]
    assert response.get_json()["error"]["code"] == code


def test_same_upload_and_pixel_limits_as_predict(client, app, monkeypatch):
    token = live_token(client)
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", len(FRAME) - 1)
    assert post(client, token).status_code == 413
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", len(FRAME) * 2)
    monkeypatch.setitem(app.config, "MAX_PIXELS", 100 * 100)
    response = post(client, token)
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "image_too_large"


def test_same_request_time_budget(client, app, monkeypatch):
    token = live_token(client)
    now = [1000.0]
    monkeypatch.setattr(deadline_module, "clock", lambda: now[0])
    monkeypatch.setitem(app.config, "REQUEST_TIMEOUT", 5.0)
    real = deadline_module.Deadline.check

    def late(self, stage):
        if stage == "inference":
            now[0] += 6.0  # decoding took longer than the whole budget
        return real(self, stage)

    monkeypatch.setattr(deadline_module.Deadline, "check", late)
    response = post(client, token)
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "request_timeout"


def test_model_still_loading_is_a_503(client, app, monkeypatch):
    token = live_token(client)
    monkeypatch.setattr(app.extensions["model_service"], "_segmenter", None)
    response = post(client, token)
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "model_not_ready"
