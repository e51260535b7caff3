"""The landing page: form with CSRF, the no-JavaScript result, and local-only assets."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from tests.app.conftest import decode_png


def csrf_token(client) -> str:
    page = client.get("/").get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, "the form carries a CSRF token"
    return match.group(1)


def data_url(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*?(?:src|href)="data:image/png;base64,([^"]+)"', page, re.S)
    assert match, f"{element_id} has a PNG data URL"
    return match.group(1)


def test_page_has_form_notice_and_local_assets(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "Research use only" in page and "Not a medical device" in page
    assert 'enctype="multipart/form-data"' in page and 'name="image"' in page
    assert 'name="viewport"' in page and '<html lang="en">' in page
    for url in re.findall(r'(?:src|href)="(/[^"]*)"', page):
        assert client.get(url).status_code == 200, url
    assert "<style" not in page and " style=" not in page and "http://" not in page and "https://" not in page
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/app.js" defer>']
    assert client.head("/").status_code == 200


def test_form_without_csrf_token_is_rejected(client, phantom_tiff):
    response = client.post("/", data={"image": (io.BytesIO(phantom_tiff), "frame.tif")})
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "did not come from this page" in response.get_data(as_text=True)


def test_form_post_renders_the_result_server_side(client, phantom_tiff):
    token = csrf_token(client)
    response = client.post(
        "/", data={"csrf_token": token, "threshold": "0.515", "image": (io.BytesIO(phantom_tiff), "frame.tif")}
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    api = client.post(
        "/predict",
        data={"image": (io.BytesIO(phantom_tiff), "f.tif"), "threshold": "0.515", "include": "mask_png,overlay_png"},
    ).get_json()
    assert "Nerve found" in page
    assert f"{api['nerve_probability']:.3f}" in page
    assert f"{api['mask_area_px']} px" in page
    assert ", ".join(map(str, api["bbox"])) in page
    assert re.search(r'id="timing">[0-9.]+ ms \(total [0-9.]+ ms\)', page)
    np.testing.assert_array_equal(decode_png(data_url(page, "download-mask")), decode_png(api["mask_png"]))
    assert data_url(page, "overlay-image") == data_url(page, "download-overlay")
    assert decode_png(data_url(page, "overlay-image")).shape == (420, 580, 3)


def test_form_errors_are_shown_on_the_page(client, app, monkeypatch):
    token = csrf_token(client)
    response = client.post("/", data={"csrf_token": token})
    assert response.status_code == 400 and "Choose an image file first." in response.get_data(as_text=True)
    response = client.post("/", data={"csrf_token": token, "image": (io.BytesIO(b"text"), "a.tif")})
    assert response.status_code == 415 and "not a supported image" in response.get_data(as_text=True)
    response = client.post("/", data={"csrf_token": token, "threshold": "7", "image": (io.BytesIO(b"text"), "a.tif")})
    assert response.status_code == 400 and "threshold must be" in response.get_data(as_text=True)
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 100)
    response = client.post("/", data={"csrf_token": token, "image": (io.BytesIO(b"x" * 1000), "a.tif")})
    assert response.status_code == 413 and response.mimetype == "text/html"
    assert "over the limit" in response.get_data(as_text=True)


def test_page_failure_renders_a_page_not_a_traceback(client, phantom_tiff, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("app.pages.analyse", broken)
    response = client.post(
        "/", data={"csrf_token": csrf_token(client), "image": (io.BytesIO(phantom_tiff), "frame.tif")}
    )
    assert response.status_code == 500 and response.mimetype == "text/html"
    assert "secret internal detail" not in response.get_data(as_text=True)


# -- the page endpoint the page's script calls ---------------------------------------------------------------


def page_post(client, data: dict, token: str | None = None, url: str = "/page/predict", **headers):
    if token is not None:
        headers["X-CSRFToken"] = token
    return client.post(url, data=data, headers=headers)


def without_timing(answer: dict) -> dict:
    answer.pop("timing_ms")
    for frame in answer.get("frames", []):
        frame.pop("timing_ms")
    return answer


def test_page_script_is_pointed_at_the_page_endpoint(client):
    page = client.get("/").get_data(as_text=True)
    assert 'data-predict="/page/predict"' in page and 'data-csrf-url="/page/csrf"' in page
    assert "/predict/batch" not in page and 'data-api="' not in page


def test_page_endpoint_answers_as_predict_for_frames_and_loops(client, phantom_tiff):
    from tests.media import loop, multipage_tiff_bytes

    token = csrf_token(client)
    include = re.search(r'data-include="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)
    for image, extra in ((phantom_tiff, {}), (multipage_tiff_bytes(loop(3)), {"frames": "all"})):
        fields = {"threshold": "0.515", "include": include, **extra}
        page = page_post(client, {"image": (io.BytesIO(image), "f.tif"), **fields}, token)
        assert page.status_code == 200, page.data[:300]
        api = client.post("/predict", data={"image": (io.BytesIO(image), "f.tif"), **fields})
        assert without_timing(page.get_json()) == without_timing(api.get_json()), extra
    assert page.get_json()["frame_count"] == 3


def test_page_endpoint_works_with_the_api_token_set_and_never_shows_it(client, app, phantom_tiff, monkeypatch):
    monkeypatch.setitem(app.config, "API_TOKEN", "s3cret-token")
    page = client.get("/").get_data(as_text=True)
    assert "s3cret-token" not in page
    response = page_post(client, {"image": (io.BytesIO(phantom_tiff), "f.tif")}, csrf_token(client))
    assert response.status_code == 200, response.data[:300]


@pytest.mark.parametrize("token", [None, "", "forged.token.value"])
def test_page_endpoint_refuses_a_missing_or_forged_token(client, phantom_tiff, token):
    csrf_token(client)  # a session exists: only the token is missing or wrong
    response = page_post(client, {"image": (io.BytesIO(phantom_tiff), "f.tif")}, token)
    assert response.status_code == 400 and response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == "csrf_failed"


def test_page_endpoint_refuses_another_sessions_token(app, client, phantom_tiff):
    response = page_post(client, {"image": (io.BytesIO(phantom_tiff), "f.tif")}, csrf_token(app.test_client()))
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "csrf_failed"


def test_page_endpoint_same_origin_browser_headers_are_accepted(client, phantom_tiff):
    headers = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    response = page_post(client, {"image": (io.BytesIO(phantom_tiff), "f.tif")}, csrf_token(client), **headers)
    assert response.status_code == 200


def test_fresh_page_token_works(client, phantom_tiff):
    csrf_token(client)
    response = client.get("/page/csrf")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    fresh = response.get_json()["csrf_token"]
    assert page_post(client, {"image": (io.BytesIO(phantom_tiff), "f.tif")}, fresh).status_code == 200


def test_page_endpoint_bad_requests_get_json_errors(client, app, monkeypatch):
    token = csrf_token(client)
    for data, status, code in (
        ({}, 400, "missing_file"),
        ({"image": (io.BytesIO(b"text"), "a.tif")}, 415, "unsupported_image_format"),
        ({"image": (io.BytesIO(b"text"), "a.tif"), "threshold": "7"}, 400, "invalid_parameter"),
        ({"image": (io.BytesIO(b"text"), "a.tif"), "frames": "some"}, 400, "invalid_parameter"),
    ):
        response = page_post(client, data, token)
        assert response.status_code == status and response.get_json()["error"]["code"] == code, data
    assert client.get("/page/predict").get_json()["error"]["code"] == "method_not_allowed"
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 100)
    response = page_post(client, {"image": (io.BytesIO(b"x" * 1000), "a.tif")}, token)
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "request_too_large"
