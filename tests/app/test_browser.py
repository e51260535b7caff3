"""The page in headless Chromium (Debian's, through Playwright) against the app served on localhost.

With JavaScript: upload a TIFF, wait for the canvas overlay, check it is drawn and the probability shown,
move the opacity slider. Without: the form POST renders the result on the server. Screenshots go to
test-artifacts/; NERVE_UPDATE_SCREENSHOT=1 also refreshes docs/screenshot.png (a synthetic phantom only,
never a real frame).
"""

from __future__ import annotations

import io
import os
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server

from tests.app.conftest import tiff_bytes
from tests.conftest import ROOT, phantom

pytestmark = pytest.mark.browser

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
ARTIFACTS = ROOT / "test-artifacts"
THRESHOLD = "0.515"  # the untrained test model's map lies in 0.50..0.52; this cut gives a partial mask

# Pixels where the canvas is not grey (R != B): the amber fill and outline over a grayscale image.
COUNT_TINTED = """() => {
  const canvas = document.getElementById('overlay-canvas');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let tinted = 0;
  for (let i = 0; i < data.length; i += 4) { if (data[i] !== data[i + 2]) { tinted += 1; } }
  return tinted;
}"""


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def base_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def upload():
    return {"name": "phantom.tif", "mimeType": "image/tiff", "buffer": tiff_bytes(phantom(420, 580))}


def test_upload_draws_overlay_and_slider_changes_it(chromium, base_url, upload):
    page = chromium.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(base_url)
    assert page.get_by_text("Research use only. Not a medical device.").is_visible()

    page.set_input_files("#image", upload)
    page.fill("#threshold", THRESHOLD)
    page.click("#submit")
    page.wait_for_selector("#overlay-canvas[data-drawn='true']", state="visible", timeout=30_000)

    assert page.url.rstrip("/") == base_url, "the result came without a page load"
    assert re.fullmatch(r"0\.\d{3}", page.inner_text("#probability"))
    assert page.inner_text("#decision") == "Nerve found"
    assert re.fullmatch(r"\d+ px", page.inner_text("#area")) and page.inner_text("#area") != "0 px"
    assert re.fullmatch(r"\d+, \d+, \d+, \d+", page.inner_text("#bbox"))
    assert re.fullmatch(r"[\d.]+ ms \(total [\d.]+ ms\)", page.inner_text("#timing"))
    for link in ("#download-mask", "#download-overlay"):
        assert page.get_attribute(link, "href").startswith("blob:")
    assert page.evaluate(
        "() => [document.getElementById('overlay-canvas').width, document.getElementById('overlay-canvas').height]"
    ) == [580, 420]

    default = page.evaluate(COUNT_TINTED)
    assert default > 1000, "the overlay is drawn"
    page.fill("#opacity", "0")
    assert page.inner_text("#opacity-value") == "0%"
    outline_only = page.evaluate(COUNT_TINTED)
    assert 0 < outline_only < default, "at opacity 0 only the outline stays"
    page.fill("#opacity", "75")
    assert page.inner_text("#opacity-value") == "75%"
    assert page.evaluate(COUNT_TINTED) == default

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-result.png"), full_page=True)
    if os.environ.get("NERVE_UPDATE_SCREENSHOT") == "1":
        page.fill("#opacity", "40")
        page.screenshot(path=str(ROOT / "docs" / "screenshot.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: one column, nothing wider than the screen
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "browser-result-phone.png"), full_page=True)
    assert not problems, problems  # includes any Content-Security-Policy violation
    page.close()


def test_page_calls_its_own_endpoint_with_the_api_token_set_and_renews_an_expired_token(
    app, chromium, base_url, upload, monkeypatch
):
    """The script posts to /page/predict as the page (CSRF token, never the API token, which the page never
    holds); on csrf_failed it fetches a fresh token once and sends again."""
    monkeypatch.setitem(app.config, "API_TOKEN", "s3cret-token")
    page = chromium.new_page(viewport={"width": 1200, "height": 900})
    sent: list[tuple[str, str, str | None]] = []
    page.on("request", lambda r: sent.append((r.method, urlsplit(r.url).path, r.headers.get("x-csrftoken"))))
    page.goto(base_url)
    assert "s3cret-token" not in page.content()
    page.eval_on_selector("input[name='csrf_token']", "field => { field.value = 'expired.token'; }")
    page.set_input_files("#image", upload)
    page.click("#submit")
    page.wait_for_selector("#overlay-canvas[data-drawn='true']", state="visible", timeout=30_000)
    calls = [(method, path, token) for method, path, token in sent if path.startswith(("/page/", "/predict"))]
    assert [(method, path) for method, path, _ in calls] == [
        ("POST", "/page/predict"),
        ("GET", "/page/csrf"),
        ("POST", "/page/predict"),
    ]
    assert calls[0][2] == "expired.token" and calls[2][2] not in (None, "expired.token")
    assert page.inner_text("#decision") in ("Nerve found", "No nerve found") and page.is_hidden("#error")
    page.close()


def test_without_javascript_the_form_renders_the_result(chromium, base_url, upload):
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(base_url)
    page.set_input_files("#image", upload)
    page.fill("#threshold", THRESHOLD)
    page.click("#submit")
    page.wait_for_selector("#overlay-image", state="visible", timeout=30_000)
    assert page.inner_text("#decision") == "Nerve found"
    assert re.fullmatch(r"0\.\d{3}", page.inner_text("#probability"))
    assert page.evaluate("() => document.getElementById('overlay-image').naturalWidth") == 580
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-no-js-result.png"), full_page=True)
    context.close()


def test_probability_view_and_threshold_slider_work_without_a_request(chromium, base_url, upload):
    page = chromium.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(base_url)
    page.set_input_files("#image", upload)
    page.fill("#threshold", THRESHOLD)
    page.click("#submit")
    page.wait_for_selector("#overlay-canvas[data-drawn='true']", state="visible", timeout=30_000)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    assert page.input_value("#display-threshold") == THRESHOLD, "the slider starts at the threshold sent"
    server_mask = page.evaluate(COUNT_TINTED)
    page.fill("#display-threshold", "0.505")  # below every pixel of interest: a larger mask
    assert page.inner_text("#display-threshold-value") == "0.505"
    lower = page.evaluate(COUNT_TINTED)
    page.fill("#display-threshold", "0.995")  # above the whole map: nothing left to draw
    higher = page.evaluate(COUNT_TINTED)
    assert higher < server_mask < lower, (higher, server_mask, lower)
    assert higher == 0

    page.check("input[name='view-mode'][value='heatmap']")
    heat = page.evaluate(COUNT_TINTED)
    assert heat > lower, "the heatmap tints every pixel with some probability"
    page.check("input[name='view-mode'][value='mask']")
    page.fill("#display-threshold", THRESHOLD)
    assert page.evaluate(COUNT_TINTED) == server_mask, "back at the sent threshold: the server's mask again"
    assert page.inner_text("#decision") == "Nerve found", "the figures stay the server's"
    assert requests == [], f"re-thresholding made requests: {requests}"
    assert not problems, problems
    page.close()


def test_cine_loop_plays_with_a_presence_strip(app, chromium, base_url):
    from tests.media import loop, multipage_tiff_bytes

    frames = loop(6)
    data = multipage_tiff_bytes(frames)
    expected = (
        app.test_client()
        .post(
            "/predict",
            data={"image": (io.BytesIO(data), "loop.tif"), "frames": "all", "threshold": THRESHOLD, "include": ""},
        )
        .get_json()
    )
    page = chromium.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(base_url)
    page.set_input_files("#image", {"name": "loop.tif", "mimeType": "image/tiff", "buffer": data})
    page.fill("#threshold", THRESHOLD)
    page.check("#all-frames")
    page.click("#submit")
    page.wait_for_selector("#overlay-canvas[data-drawn='true']", state="visible", timeout=30_000)

    assert page.is_visible("#player")
    assert page.inner_text("#frame-label") == "Frame 1 of 6"
    classes = page.eval_on_selector_all("#presence-strip li", "cells => cells.map(c => c.className)")
    assert [c.split()[0] for c in classes] == [
        "present" if f["nerve_present"] else "absent" for f in expected["frames"]
    ]
    page.click("#presence-strip li:nth-child(4)")
    assert page.get_attribute("#overlay-canvas", "data-frame") == "3"
    assert page.inner_text("#frame-label") == "Frame 4 of 6"
    assert page.inner_text("#area") == f"{expected['frames'][3]['mask_area_px']} px"
    page.click("#play")
    page.wait_for_function("() => document.getElementById('overlay-canvas').dataset.frame !== '3'", timeout=10_000)
    page.click("#play")
    assert page.get_attribute("#play", "aria-pressed") == "false"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-cine.png"), full_page=True)
    assert not problems, problems
    page.close()


def test_a_dicom_upload_offers_its_dicom_seg_and_a_tiff_does_not(chromium, base_url, upload):
    import pydicom

    from tests.media import dicom_bytes

    page = chromium.new_page(viewport={"width": 1200, "height": 900})
    page.goto(base_url)
    page.set_input_files("#image", upload)
    page.click("#submit")
    page.wait_for_selector("#overlay-canvas[data-drawn='true']", state="visible", timeout=30_000)
    assert page.is_hidden("#download-seg"), "a TIFF has no study to belong to"

    dicom = {"name": "study.dcm", "mimeType": "application/dicom", "buffer": dicom_bytes(phantom(420, 580))}
    page.set_input_files("#image", dicom)
    page.fill("#threshold", THRESHOLD)
    page.click("#submit")
    page.wait_for_selector("#download-seg", state="visible", timeout=30_000)
    with page.expect_download() as download:
        page.click("#download-seg")
    seg = pydicom.dcmread(download.value.path())
    source = pydicom.dcmread(io.BytesIO(dicom["buffer"]))
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.pixel_array.astype(bool).any(), "the SEG holds the outline the page drew"
    page.close()


@pytest.mark.parametrize(
    ("quality", "verdict", "confidence"),
    [
        ({"reliable": False, "expected_dice": 0.31}, "Uncertain: do not rely on this outline", "expected Dice 0.31"),
        ({"reliable": True, "expected_dice": 0.88}, "Nerve found", "expected Dice 0.88"),
        ({}, "Nerve found", "no confidence estimate"),
    ],
    ids=["unreliable", "reliable", "no_estimator"],
)
def test_the_page_gives_three_verdicts_and_says_what_each_number_means(
    chromium, base_url, upload, quality, verdict, confidence
):
    """The answer's quality fields are set in flight (the test model has no estimator): an unreliable answer is
    never shown as a plain finding, and a loop's strip marks its unreliable frames."""
    import json

    def with_quality(route):
        body = route.fetch().json()
        for result in body.get("frames", [body]):
            result.update(quality)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page = chromium.new_page(viewport={"width": 1200, "height": 900})
    page.route("**/page/predict", with_quality)
    page.goto(base_url)
    page.set_input_files("#image", upload)
    page.fill("#threshold", THRESHOLD)
    page.click("#submit")
    page.wait_for_selector("#overlay-canvas[data-drawn='true']", state="visible", timeout=30_000)
    assert page.inner_text("#decision") == verdict
    assert confidence in page.inner_text("#confidence")
    assert "Peak pixel probability" in page.inner_text("dl.figures")
    assert "not a confidence" in page.inner_text("#result")

    from tests.media import loop, multipage_tiff_bytes

    page.set_input_files(
        "#image", {"name": "loop.tif", "mimeType": "image/tiff", "buffer": multipage_tiff_bytes(loop(3))}
    )
    page.check("#all-frames")
    page.click("#submit")
    page.wait_for_selector("#presence-strip li", timeout=30_000)
    kinds = page.eval_on_selector_all("#presence-strip li", "cells => cells.map(c => c.className.split(' ')[0])")
    expected = "uncertain" if quality.get("reliable") is False else None
    assert len(kinds) == 3 and (expected is None or set(kinds) == {expected}), kinds
    page.close()
