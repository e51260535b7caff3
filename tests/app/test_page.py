"""The landing page: form with CSRF, the no-JavaScript result, and local-only assets."""

from __future__ import annotations

import io
import re

import numpy as np

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
