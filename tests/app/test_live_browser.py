"""Live mode in headless Chromium, fed by its fake camera playing a clip of generated frames (tests/media.py).

The overlay is checked against /predict's own answer for the very bytes the page sent (recorded on the server
by `live_spy`), so the check holds for whatever model the test serves. Nothing here depends on how fast the
machine is: every wait is for a state, with a generous cap.
"""

from __future__ import annotations

import base64
import csv
import io
import json

import cv2
import numpy as np
import pytest
from flask import jsonify
from PIL import Image

from tests.app.conftest import PAGE_TAG_HEADER, LivePages

pytestmark = pytest.mark.browser

THRESHOLD = "0.515"  # the untrained test model's map lies in 0.50..0.52; this cut gives a partial mask
CROP_THRESHOLD = "0.51"  # its map is lower on the crop below
WAIT_MS = 60_000

# Every MediaStream the page opens, so that a test can see its tracks end.
RECORD_STREAMS = """
window.__liveStreams = [];
for (const name of ["getUserMedia", "getDisplayMedia"]) {
  const original = navigator.mediaDevices && navigator.mediaDevices[name];
  if (original) {
    navigator.mediaDevices[name] = async function (constraints) {
      const stream = await original.call(navigator.mediaDevices, constraints);
      window.__liveStreams.push(stream);
      return stream;
    };
  }
}
"""

# The overlay canvas's coverage (alpha > 0) as base64 bytes, one per pixel, and its size.
OVERLAY_COVERAGE = """() => {
  const canvas = document.getElementById('live-overlay');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let text = '';
  for (let i = 3; i < data.length; i += 4) { text += data[i] > 0 ? '\\x01' : '\\x00'; }
  return [canvas.width, canvas.height, btoa(text)];
}"""

TRACK_STATES = "() => window.__liveStreams.flatMap((s) => s.getTracks().map((t) => t.readyState))"


def number(page, selector: str) -> float:
    return float(page.inner_text(selector))


def wait_answers(page, count: int) -> None:
    page.wait_for_function(
        f"() => Number(document.getElementById('live-frames').textContent) >= {count}", timeout=WAIT_MS
    )


def open_live(browser, url: str, pages: LivePages, problems: list[str], init_script: str = RECORD_STREAMS):
    page = browser.new_page(viewport={"width": 1200, "height": 900}, extra_http_headers={PAGE_TAG_HEADER: pages.tag})
    pages.append(page)
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.add_init_script(init_script)
    page.goto(f"{url}/live")
    return page


def coverage(page) -> np.ndarray:
    width, height, packed = page.evaluate(OVERLAY_COVERAGE)
    return np.frombuffer(base64.b64decode(packed), np.uint8).reshape(height, width).astype(bool)


def reference_mask(client, body: bytes, content_type: str, threshold: str = THRESHOLD) -> np.ndarray:
    """/predict's mask for the bytes the page sent, at the threshold the page used."""
    answer = client.post(
        f"/predict?include=mask_png&threshold={threshold}", data=body, content_type=content_type
    ).get_json()
    with Image.open(io.BytesIO(base64.b64decode(answer["mask_png"]))) as image:
        return np.asarray(image) > 0


def assert_overlay_matches(drawn: np.ndarray, mask: np.ndarray) -> None:
    """The fill covers the mask and the outline (2 px wide, on the boundary) stays next to it."""
    assert mask.sum() > 500, "the test model's answer has a mask to draw"
    near = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert (drawn & mask).sum() >= 0.97 * mask.sum(), "the overlay covers the mask"
    assert (drawn & ~near).sum() <= 0.01 * drawn.sum(), "the overlay lies on the mask, nowhere else"


def test_camera_overlay_is_predicts_answer_and_stop_releases_the_camera(
    camera_browser, live_url, live_spy, client, camera_frame, live_pages
):
    problems: list[str] = []
    page = open_live(camera_browser, live_url, live_pages, problems)
    assert page.get_by_text("Research use only. Not a medical device.").is_visible()
    page.fill("#live-threshold", THRESHOLD)
    page.click("#live-start")
    wait_answers(page, 3)
    assert page.inner_text("#live-status") == "Running."
    assert number(page, "#live-fps") > 0 and number(page, "#live-latency") > 0
    before = int(number(page, "#live-frames"))
    wait_answers(page, before + 3)  # the counter keeps moving

    assert len(set(live_spy.bodies)) == 1, "a still scene: every frame the page sent is the same"
    body, kind = live_spy.bodies[-1], live_spy.content_types[-1]
    assert kind == "image/bmp"
    with Image.open(io.BytesIO(body)) as image:
        assert image.mode == "L" and image.size == (580, 420)
        sent = np.asarray(image).astype(float)
    # The fake camera plays the luma as studio range (16..235); inside it, the frame arrives level for level.
    scene = camera_frame.astype(float)
    inside = (scene > 20) & (scene < 230)
    assert np.abs(sent[inside] - (scene[inside] - 16) * 255 / 219).max() <= 1.5

    assert_overlay_matches(coverage(page), reference_mask(client, body, kind))
    assert page.inner_text("#live-verdict") == "Nerve found"
    assert "Authorization" not in live_spy.headers[-1]

    page.fill("#live-opacity", "0")
    assert page.inner_text("#live-opacity-value") == "0%"
    page.click("#live-stop")
    states = page.evaluate(TRACK_STATES)
    assert states and all(state == "ended" for state in states), states
    assert page.evaluate("() => document.getElementById('live-video').srcObject") is None
    assert page.inner_text("#live-status") == "Stopped."
    assert page.is_enabled("#live-start") and not page.is_enabled("#live-stop")
    assert not problems, problems  # includes any Content-Security-Policy violation
    page.close()


def test_a_busy_server_gets_one_request_at_a_time_and_frames_are_dropped(
    camera_browser, live_url, live_spy, live_pages
):
    live_spy.delay_s = 0.4  # far slower than the camera's 30 frames/s
    problems: list[str] = []
    page = open_live(camera_browser, live_url, live_pages, problems)
    in_flight = [0, 0]  # now, most ever
    is_live = lambda request: "/live/predict" in request.url  # noqa: E731

    def started(request):
        if is_live(request):
            in_flight[0] += 1
            in_flight[1] = max(in_flight)

    def ended(request):
        if is_live(request):
            in_flight[0] -= 1

    page.on("request", started)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    page.click("#live-start")
    wait_answers(page, 4)
    page.wait_for_function("() => Number(document.getElementById('live-dropped').textContent) > 0", timeout=WAIT_MS)
    answered = int(number(page, "#live-frames"))
    page.click("#live-stop")
    assert live_spy.max_active == 1, "the server never had two of the page's requests at once"
    assert in_flight[1] == 1, "the browser never had two requests open"
    assert len(live_spy.bodies) <= answered + 1, "no backlog: at most the one request in flight is unanswered"
    assert not problems, problems
    page.close()


def test_the_crop_is_dragged_once_remembered_and_outlined_in_place(
    camera_browser, live_url, live_spy, client, live_pages
):
    problems: list[str] = []
    page = open_live(camera_browser, live_url, live_pages, problems)
    page.fill("#live-threshold", CROP_THRESHOLD)
    page.click("#live-start")
    wait_answers(page, 1)
    page.click("#live-crop")
    box = page.locator("#live-overlay").bounding_box()
    page.mouse.move(box["x"] + 0.25 * box["width"], box["y"] + 0.2 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.6 * box["width"], box["y"] + 0.5 * box["height"], steps=4)
    page.mouse.move(box["x"] + 0.75 * box["width"], box["y"] + 0.8 * box["height"], steps=4)
    page.mouse.up()
    saved = json.loads(page.evaluate("() => localStorage.getItem('nerve-live-crop')"))
    assert saved["x"] == pytest.approx(0.25, abs=0.01) and saved["w"] == pytest.approx(0.5, abs=0.01)
    assert saved["y"] == pytest.approx(0.2, abs=0.01) and saved["h"] == pytest.approx(0.6, abs=0.01)
    page.click("#live-stop")

    # A new visit uses the remembered crop at once: the page sends the marked area only, and draws the answer
    # at that area's place in the frame.
    page.reload()
    page.fill("#live-threshold", CROP_THRESHOLD)
    sent_before = len(live_spy.bodies)
    page.click("#live-start")
    wait_answers(page, 3)
    body = live_spy.bodies[-1]
    assert len(live_spy.bodies) > sent_before
    with Image.open(io.BytesIO(body)) as image:
        width, height = image.size
    x, y = round(saved["x"] * 580), round(saved["y"] * 420)
    assert (width, height) == (round(saved["w"] * 580), round(saved["h"] * 420))
    drawn = coverage(page)
    assert not drawn[:y].any() and not drawn[y + height :].any(), "nothing is drawn outside the crop"
    assert not drawn[:, :x].any() and not drawn[:, x + width :].any()
    assert_overlay_matches(
        drawn[y : y + height, x : x + width], reference_mask(client, body, "image/bmp", CROP_THRESHOLD)
    )
    assert "marked area" in page.inner_text("#live-crop-label")
    page.click("#live-crop-reset")
    assert page.evaluate("() => localStorage.getItem('nerve-live-crop')") is None
    page.click("#live-stop")
    assert not problems, problems
    page.close()


def test_png_transport_sends_the_same_frame(camera_browser, live_url, live_spy, live_pages):
    problems: list[str] = []
    page = open_live(camera_browser, live_url, live_pages, problems)
    page.select_option("#live-encoding", "png")
    page.click("#live-start")
    wait_answers(page, 2)
    page.click("#live-stop")
    assert set(live_spy.content_types) == {"image/png"}
    with Image.open(io.BytesIO(live_spy.bodies[-1])) as image:
        png = np.asarray(image.convert("RGB"))
    assert (png[..., 0] == png[..., 1]).all() and (png[..., 1] == png[..., 2]).all(), "a grey feed stays grey"
    assert not problems, problems
    page.close()


def test_works_with_the_api_token_set_and_no_token_in_the_page(
    camera_browser, live_url, live_spy, app, monkeypatch, live_pages
):
    monkeypatch.setitem(app.config, "API_TOKEN", "s3cret-token")
    problems: list[str] = []
    page = open_live(camera_browser, live_url, live_pages, problems)
    assert "s3cret-token" not in page.content()
    page.click("#live-start")
    wait_answers(page, 2)
    page.click("#live-stop")
    assert all("Authorization" not in headers for headers in live_spy.headers)
    assert not problems, problems
    page.close()


def test_server_errors_are_shown_overload_retried_and_a_refusal_stops_cleanly(
    camera_browser, live_url, live_spy, live_pages
):
    failures = {"count": 2, "status": 503, "code": "model_not_ready"}

    def rewrite(response):
        if failures["count"]:
            failures["count"] -= 1
            return jsonify(error={"code": failures["code"], "message": "injected by the test"}), failures["status"]
        return response

    live_spy.rewrite = rewrite
    page = open_live(camera_browser, live_url, live_pages, [])
    page.click("#live-start")
    page.wait_for_selector("#live-error:has-text('injected by the test')", timeout=WAIT_MS)
    assert "Retrying" in page.inner_text("#live-error")
    wait_answers(page, 2)  # the loop went on after the overload
    page.wait_for_selector("#live-error", state="hidden", timeout=WAIT_MS)
    assert number(page, "#live-errors") == 2

    failures.update(count=1, status=400, code="invalid_parameter")
    page.wait_for_selector("#live-error:has-text('Stopped: injected by the test')", timeout=WAIT_MS)
    assert page.inner_text("#live-status") == "Stopped after an error."
    assert all(state == "ended" for state in page.evaluate(TRACK_STATES))
    assert page.is_enabled("#live-start")
    page.close()


def test_the_confidence_verdict_is_shown_when_answers_carry_it(camera_browser, live_url, live_spy, live_pages):
    verdict = {"reliable": False, "expected_dice": 0.41}

    def rewrite(response):
        return jsonify({**response.get_json(), **verdict})

    live_spy.rewrite = rewrite
    problems: list[str] = []
    page = open_live(camera_browser, live_url, live_pages, problems)
    page.fill("#live-threshold", THRESHOLD)
    page.click("#live-start")
    page.wait_for_selector("#live-verdict:has-text('Uncertain')", timeout=WAIT_MS)
    assert page.inner_text("#live-verdict") == "Uncertain: do not rely on this outline (expected Dice 0.41)"
    assert coverage(page).any(), "the uncertain outline is still drawn (dashed)"
    verdict.update(reliable=True, expected_dice=0.9)
    page.wait_for_selector("#live-verdict:has-text('Nerve found')", timeout=WAIT_MS)
    assert page.inner_text("#live-verdict") == "Nerve found (expected Dice 0.90)"
    page.click("#live-stop")
    assert not problems, problems
    page.close()


def test_recording_saves_webm_and_per_frame_csv(camera_browser, live_url, live_spy, tmp_path, live_pages):
    problems: list[str] = []
    page = open_live(camera_browser, live_url, live_pages, problems)
    page.click("#live-start")
    wait_answers(page, 1)
    page.click("#live-record")
    assert page.get_attribute("#live-record", "aria-pressed") == "true"
    wait_answers(page, int(number(page, "#live-frames")) + 3)
    page.wait_for_timeout(1500)  # longer than the recorder's 1 s timeslice: at least one chunk of video, however busy
    page.click("#live-record")
    page.wait_for_selector("#live-save-csv", state="visible", timeout=WAIT_MS)
    page.wait_for_selector("#live-save-video", state="visible", timeout=WAIT_MS)
    page.click("#live-stop")
    files = {}
    for link in ("#live-save-csv", "#live-save-video"):
        with page.expect_download() as download:
            page.click(link)
        files[link] = download.value.path().read_bytes()
        assert download.value.suggested_filename.startswith("live-session-")
    rows = list(csv.DictReader(io.StringIO(files["#live-save-csv"].decode())))
    assert len(rows) >= 3
    assert {row["nerve_present"] for row in rows} <= {"true", "false"}
    assert all(row["crop_w"] == "580" and row["crop_h"] == "420" and float(row["latency_ms"]) > 0 for row in rows)
    assert files["#live-save-video"][:4] == b"\x1a\x45\xdf\xa3", "a WebM (EBML) file"
    assert not problems, problems
    page.close()


def test_a_local_video_file_is_a_source(camera_browser, live_url, live_spy, tmp_path, live_pages):
    from tests.media import loop, video_bytes

    clip = tmp_path / "clip.webm"
    clip.write_bytes(video_bytes(loop(20, 420, 580), tmp_path, suffix=".webm", fourcc="VP80"))
    problems: list[str] = []
    page = open_live(camera_browser, live_url, live_pages, problems)
    page.check("input[name='live-source'][value='file']")
    page.set_input_files("#live-file", str(clip))
    page.click("#live-start")
    wait_answers(page, 2)
    with Image.open(io.BytesIO(live_spy.bodies[-1])) as image:
        assert image.size == (580, 420)
    page.click("#live-stop")
    assert page.evaluate("() => document.getElementById('live-video').getAttribute('src')") is None
    assert not problems, problems
    page.close()


def test_without_camera_permission_the_page_says_so(camera_denied_browser, live_url, live_pages):
    page = open_live(camera_denied_browser, live_url, live_pages, [])
    page.click("#live-start")
    page.wait_for_selector("#live-error", state="visible", timeout=WAIT_MS)
    assert "not allowed to use a camera" in page.inner_text("#live-error")
    assert page.inner_text("#live-status") == "Stopped."
    assert page.is_enabled("#live-start") and not page.is_enabled("#live-stop")
    page.close()


def test_without_a_camera_the_page_says_so(camera_browser, live_url, live_pages):
    no_camera = "navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('none', 'NotFoundError'));"
    page = open_live(camera_browser, live_url, live_pages, [], init_script=no_camera)
    page.click("#live-start")
    page.wait_for_selector("#live-error", state="visible", timeout=WAIT_MS)
    assert "No camera or capture device was found" in page.inner_text("#live-error")
    page.close()
