"""Security measures: headers, optional API token, in-memory uploads, secret key handling."""

from __future__ import annotations

import io
import logging
import re

import pytest
from flask import request

from app import create_app
from app.uploads import InMemoryRequest


@pytest.mark.parametrize("path", ["/", "/healthz", "/predict", "/no-such-page", "/static/app.js"])
def test_security_headers_everywhere(client, path):
    headers = client.get(path).headers
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    if not path.startswith("/static/"):
        assert headers["Cache-Control"] == "no-store"


@pytest.fixture
def token(app, monkeypatch) -> str:
    monkeypatch.setitem(app.config, "API_TOKEN", "s3cret-token")
    return "s3cret-token"


def test_api_token_required_when_configured(client, token, phantom_tiff):
    def post(**headers):
        return client.post("/predict", data={"image": (io.BytesIO(phantom_tiff), "f.tif")}, headers=headers)

    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {token}"},
        {"X-CSRFToken": "forged"},
    ):
        response = post(**headers)
        assert response.status_code == 401, headers
        assert response.get_json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert post(Authorization=f"Bearer {token}").status_code == 200
    batch = client.post("/predict/batch", data={"images": [(io.BytesIO(phantom_tiff), "f.tif")]})
    assert batch.status_code == 401
    for path in ("/healthz", "/readyz", "/openapi.json", "/api/model"):
        assert client.get(path).status_code == 200, path


#: The pages' own endpoints; both take the page's credential (session + CSRF token, same origin), never the API's.
PAGE_ENDPOINTS = ("/page/predict", "/live/predict")


def page_csrf_tokens(client) -> list[str]:
    """The CSRF tokens anyone can scrape from the public pages (the landing page's form, the live page's data)."""
    landing = client.get("/").get_data(as_text=True)
    live = client.get("/live").get_data(as_text=True)
    return [
        re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', landing).group(1),
        re.search(r'data-csrf="([^"]+)"', live).group(1),
    ]


def frame_upload(phantom_tiff: bytes, field: str = "image") -> dict:
    return {field: (io.BytesIO(phantom_tiff), "f.tif")}


def test_api_refuses_the_pages_csrf_tokens(client, token, phantom_tiff):
    """A token scraped from a public page, with that page's session cookie and same-origin headers, opens no API."""
    same_origin = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    for csrf in page_csrf_tokens(client):
        for path, field in (("/predict", "image"), ("/predict/batch", "images")):
            response = client.post(
                path, data=frame_upload(phantom_tiff, field), headers={"X-CSRFToken": csrf, **same_origin}
            )
            assert response.status_code == 401, path
            assert response.get_json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("endpoint", PAGE_ENDPOINTS)
def test_page_endpoints_refuse_the_api_token_alone(client, token, phantom_tiff, endpoint):
    page_csrf_tokens(client)  # a session exists: only its CSRF token is missing
    response = client.post(endpoint, data=frame_upload(phantom_tiff), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "csrf_failed"


@pytest.mark.parametrize("endpoint", PAGE_ENDPOINTS)
@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}])
def test_page_endpoints_refuse_other_sites_even_with_both_credentials(client, token, phantom_tiff, endpoint, headers):
    csrf = page_csrf_tokens(client)[0]
    headers = {"X-CSRFToken": csrf, "Authorization": f"Bearer {token}", **headers}
    response = client.post(endpoint, data=frame_upload(phantom_tiff), headers=headers)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "cross_origin"


@pytest.mark.parametrize("endpoint", PAGE_ENDPOINTS)
def test_page_endpoints_take_either_pages_token_with_the_api_token_set(client, token, phantom_tiff, endpoint):
    """One session, one token: the landing page's and the live page's are the same credential."""
    for csrf in page_csrf_tokens(client):
        response = client.post(endpoint, data=frame_upload(phantom_tiff), headers={"X-CSRFToken": csrf})
        assert response.status_code == 200, response.data[:300]


def cookie_attributes(response, name: str = "session") -> set[str]:
    """The lower-cased attributes (`secure`, `httponly`, `samesite=lax`, ...) of the Set-Cookie for `name`."""
    [cookie] = [value for value in response.headers.getlist("Set-Cookie") if value.startswith(f"{name}=")]
    return {part.strip().lower() for part in cookie.split(";")[1:]}


def test_plain_http_by_default_no_hsts_and_no_secure_cookie(client):
    """Off by default: over plain HTTP a Secure cookie would never come back and the page's calls would fail."""
    response = client.get("/")
    assert "Strict-Transport-Security" not in response.headers
    attributes = cookie_attributes(response)
    assert "secure" not in attributes and {"httponly", "samesite=lax", "path=/"} <= attributes


HSTS = "max-age=31536000; includeSubDomains"


def test_https_switch_sends_hsts_and_secure_cookies(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("NERVE_HTTPS", "1")
    app = create_app({"MODEL_DIR": tiny_model_dir, "SECRET_KEY": "k"})
    for path in ("/", "/healthz", "/predict", "/no-such-page", "/static/app.js", "/live"):
        assert app.test_client().get(path).headers["Strict-Transport-Security"] == HSTS, path
    for path in ("/", "/live", "/page/csrf", "/live/csrf"):  # every route that starts a session (its CSRF token)
        assert {"secure", "httponly", "samesite=lax"} <= cookie_attributes(app.test_client().get(path)), path


def test_uploads_stay_in_memory(app):
    """Werkzeug would spool a part over 500 kB to a temporary file; ours stay in memory."""
    big = b"\0" * 2_000_000
    with app.test_request_context(
        "/predict", method="POST", data={"image": (io.BytesIO(big), "../../etc/passwd\0.tif")}
    ):
        assert isinstance(request, InMemoryRequest)
        stream = request.files["image"].stream
        assert isinstance(stream, io.BytesIO) and stream.getvalue() == big


def test_path_traversal_filename_is_harmless(client, phantom_tiff):
    response = client.post("/predict", data={"image": (io.BytesIO(phantom_tiff), "../../../etc/passwd")})
    assert response.status_code == 200


def test_random_secret_key_with_a_warning(tiny_model_dir, caplog, monkeypatch):
    monkeypatch.delenv("NERVE_SECRET_KEY", raising=False)
    with caplog.at_level(logging.WARNING):
        first = create_app({"MODEL_DIR": tiny_model_dir})
    assert "NERVE_SECRET_KEY is not set" in caplog.text
    assert len(first.config["SECRET_KEY"]) >= 32 and not first.debug
    monkeypatch.setenv("NERVE_SECRET_KEY", "from-the-environment")
    assert create_app({"MODEL_DIR": tiny_model_dir}).config["SECRET_KEY"] == "from-the-environment"


def test_debug_mode_cannot_be_switched_on(tiny_model_dir, caplog, monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    with caplog.at_level(logging.WARNING):
        app = create_app({"MODEL_DIR": tiny_model_dir, "SECRET_KEY": "k"})
    assert not app.debug and not app.config["DEBUG"]
    assert "never runs in debug mode" in caplog.text
    assert not create_app({"MODEL_DIR": tiny_model_dir, "SECRET_KEY": "k", "DEBUG": True}).debug


def test_api_token_is_compared_in_constant_time(client, token, phantom_tiff, monkeypatch):
    """The comparison goes through hmac.compare_digest, whose time does not depend on where bytes differ."""
    import hmac

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    response = client.post(
        "/predict",
        data={"image": (io.BytesIO(phantom_tiff), "f.tif")},
        headers={"Authorization": "Bearer s3cret-tokeX"},
    )
    assert response.status_code == 401
    assert calls == [(b"s3cret-tokeX", token.encode())]
