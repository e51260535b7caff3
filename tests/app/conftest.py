"""App fixtures: one app per session on the tiny test model, encoded phantom images, and the app served to
headless Chromium with a fake camera."""

from __future__ import annotations

import functools
import io
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
from jsonschema import Draft202012Validator
from PIL import Image
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from werkzeug.serving import make_server

from tests.conftest import phantom


def tiff_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array)
    return buffer.getvalue()


def pil_bytes(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def decode_png(encoded: str) -> np.ndarray:
    import base64

    with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
        assert image.format == "PNG"
        return np.asarray(image)


SPEC_URI = "urn:nerve-openapi"


def response_validator(spec: dict, path: str, method: str, status: int) -> Draft202012Validator:
    """A validator for one documented response of /openapi.json's document `spec`."""
    responses = spec["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} does not document {status}"
    assert "schema" in responses[str(status)]["content"]["application/json"]
    registry = Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012))
    pointer = "/".join(
        part.replace("~", "~0").replace("/", "~1")
        for part in ("paths", path, method, "responses", str(status), "content", "application/json", "schema")
    )
    return Draft202012Validator({"$ref": f"{SPEC_URI}#/{pointer}"}, registry=registry)


@pytest.fixture(scope="session")
def app(tiny_model_dir):
    from app import create_app

    return create_app({"MODEL_DIR": tiny_model_dir, "SECRET_KEY": "test-secret", "TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def quality_app(quality_model_dir):
    """The app serving the tiny model with a quality estimator (tests.conftest.sample_estimator)."""
    from app import create_app

    return create_app({"MODEL_DIR": quality_model_dir, "SECRET_KEY": "test-secret", "TESTING": True})


@pytest.fixture(scope="session")
def phantom_tiff() -> bytes:
    """A scanner-sized (580 x 420) 8-bit grayscale TIFF."""
    return tiff_bytes(phantom(420, 580))


# Live mode in headless Chromium: the app served on localhost, and browsers whose fake camera plays a clip made
# from generated frames (tests/media.py); the browser tests skip when Debian's chromium is not installed.

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def fake_camera_args(clip: Path) -> list[str]:
    """Chromium's switches for a fake camera that plays `clip` (a Y4M file) in a loop."""
    return [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={clip}"]


def serve(app) -> Iterator[str]:
    """Serve `app` on a free localhost port in a thread; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def live_url(app) -> Iterator[str]:
    yield from serve(app)


@pytest.fixture(scope="session")
def camera_frame() -> np.ndarray:
    """The scene the fake camera films: a scanner-sized phantom, the same in every frame, so that every answer
    is the same and the overlay can be compared with /predict's answer for the frame the page sent."""
    return phantom(420, 580)


@pytest.fixture(scope="session")
def camera_clip(tmp_path_factory, camera_frame) -> Path:
    from tests.media import y4m_bytes

    path = tmp_path_factory.mktemp("camera") / "phantom.y4m"
    path.write_bytes(y4m_bytes(np.repeat(camera_frame[None], 3, axis=0), fps=30))
    return path


@pytest.fixture(scope="module")
def playwright():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def camera_browser(playwright, camera_clip):
    """Chromium whose camera is the fake one playing `camera_clip`, with permission granted."""
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=[*fake_camera_args(camera_clip), "--use-fake-ui-for-media-stream"],
    )
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def camera_denied_browser(playwright, camera_clip):
    """Chromium with the same fake camera whose permission prompt is answered 'block'."""
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=[*fake_camera_args(camera_clip), "--deny-permission-prompts"],
    )
    yield browser
    browser.close()


class LivePages(list):
    """The pages one test opens. They send `PAGE_TAG_HEADER: tag` with every request, so that the test's spy
    can tell them from a page of an earlier test whose last frame the server is still answering."""

    def __init__(self) -> None:
        super().__init__()
        self.tag = uuid.uuid4().hex


PAGE_TAG_HEADER = "X-Test-Pages"


class LiveSpy:
    """Wraps the live endpoint of the served app: records what the page sent, how many requests were being
    answered at once, and can slow the answers down or rewrite them (`delay_s`, `rewrite(response) -> response`).
    Only requests from the test's own pages (`tag`) are recorded, slowed or rewritten: a frame an earlier test's
    page sent just before it was closed can reach the view late under load, and must not use up this test's
    injected failures."""

    def __init__(self, view, tag: str) -> None:
        self.view = view
        self.tag = tag
        self.bodies: list[bytes] = []
        self.content_types: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.delay_s = 0.0
        self.rewrite = None
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        from flask import request

        if request.headers.get(PAGE_TAG_HEADER) != self.tag:
            return self.view(*args, **kwargs)
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.bodies.append(request.get_data())  # cached, so the view reads the same bytes
            self.content_types.append(request.mimetype)
            self.headers.append(dict(request.headers))
        try:
            if self.delay_s:
                threading.Event().wait(self.delay_s)
            response = self.view(*args, **kwargs)
            return self.rewrite(response) if self.rewrite else response
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture
def live_spy(app, monkeypatch, live_pages) -> LiveSpy:
    spy = LiveSpy(app.view_functions["live.predict"], live_pages.tag)
    # flask-wtf finds a view's CSRF exemption by its module and name, so the wrapper carries the view's.
    monkeypatch.setitem(app.view_functions, "live.predict", functools.update_wrapper(spy, spy.view))
    return spy


@pytest.fixture
def live_pages() -> Iterator[LivePages]:
    """Pages a test opens (it appends them): closed at the end even when the test fails, so that no page goes on
    posting frames into the next test."""
    pages = LivePages()
    yield pages
    for page in pages:
        if not page.is_closed():
            page.close()
