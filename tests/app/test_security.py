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


def test_page_script_authenticates_with_its_csrf_token(client, token, phantom_tiff):
    page = client.get("/").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post(
        "/predict", data={"image": (io.BytesIO(phantom_tiff), "f.tif")}, headers={"X-CSRFToken": csrf}
    )
    assert response.status_code == 200


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
