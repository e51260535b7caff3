"""Live mode end to end: the /live page in headless Chromium against the API alone, on the same server, same run.

    python benchmarks/bench_live.py [--model-dir model] [--seconds 30] [--warmup 5] [--heap-minutes 1]
                                    [--jpeg-frames 40] [--split-cores]

It serves the model the fast way, as `make run` does (the ONNX export made first when it is missing or older
than the weights, and NERVE_RUNTIME=onnxruntime so that the server refuses to fall back to Keras), with
`gunicorn -c gunicorn.conf.py "app:create_app()"` (2 workers x 2 threads), then measures:

- the API alone: one http.client keep-alive client posting the frame the page sends (the fake camera's 580 x 420
  frame as an 8-bit grey BMP) to /predict with the page's fields (`include=contours`), one after another;
- the page: Chromium's fake camera playing a 580 x 420 clip at 60 frames/s into /live, for each frame
  transport (grey BMP, the default, and PNG); answered frames/s over the window and the page's own p50 latency
  (grab to outline drawn) sampled every 2 s (each sample covers the last 100 answers);
- the browser's encoding time for the frame as PNG and as JPEG (toBlob), and what JPEG at quality 0.95 does to
  the masks: per-image Dice between the served masks of the PNG and of the JPEG version of the same frames (the
  shared data when present, else phantoms);
- the API client once more while a page only plays the fake camera (no analysis): the share of the cores the
  browser's video itself takes from the server;
- the page's JS heap (CDP Runtime.getHeapUsage after a forced GC, the least of three readings) at the start and
  the end of a live session of --heap-minutes, not recording.

With --split-cores the server runs on the first half of the cores (its network runtime told so) and the
browser and the API client on the rest, as when the page runs on a laptop and the service on its host: what
the page's own round trip costs once it no longer takes its time slices from the server.

Then the targets: live frames/s / min(60, API frames/s) (>= 0.85) and live p50 / API p50 (<= 1.3), against the
faster of the two API runs (one before and one after the page's). Prints JSON; docs/performance.md records it.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_predict import free_port, percentiles, start_gunicorn, stop_server, wait_ready  # noqa: E402
from model.artifact import MODEL_DIR  # noqa: E402
from model.metrics import dice  # noqa: E402
from model.onnx_serving import ONNX_NAME  # noqa: E402
from tests.app.conftest import CHROMIUM, fake_camera_args  # noqa: E402
from tests.conftest import DATA_DIR, phantom  # noqa: E402
from tests.media import loop, y4m_bytes  # noqa: E402

WIDTH, HEIGHT, CAMERA_FPS = 580, 420, 60
FIELDS = "include=contours"

BROWSER_ENCODING = """async () => {
  const video = document.getElementById('live-video');
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  const out = {};
  for (const [name, type, quality] of [['png', 'image/png'], ['jpeg_0.95', 'image/jpeg', 0.95]]) {
    const times = [];
    let size = 0;
    for (let i = 0; i < 25; i += 1) {
      const start = performance.now();
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, type, quality));
      times.push(performance.now() - start);
      size = blob.size;
    }
    times.sort((a, b) => a - b);
    out[name] = { p50_ms: times[12], bytes: size };
  }
  return out;
}"""


def ensure_onnx(model_dir: Path) -> None:
    """`make onnx`'s rule: export when unet.onnx is missing or older than the weights or their metadata."""
    onnx = model_dir / ONNX_NAME
    sources = [model_dir / "unet.keras", model_dir / "metadata.json"]
    if not onnx.exists() or onnx.stat().st_mtime < max(path.stat().st_mtime for path in sources):
        subprocess.run([sys.executable, "-m", "model.onnx_export", "--model-dir", str(model_dir)], cwd=ROOT, check=True)


def camera_frames() -> np.ndarray:
    """A drifting phantom, as a probe moving slowly over the neck."""
    return loop(CAMERA_FPS, HEIGHT, WIDTH)


def page_frame(luma: np.ndarray) -> bytes:
    """What the page sends for a camera frame: the fake camera's luma read as studio range, as a grey BMP."""
    grey = np.clip(np.rint((luma.astype(np.float64) - 16) * 255 / 219), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="BMP")
    return buffer.getvalue()


def post(connection: http.client.HTTPConnection, path: str, body: bytes, content_type: str) -> tuple[float, dict]:
    start = time.perf_counter()
    connection.request("POST", path, body, {"Content-Type": content_type})
    response = connection.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
    return elapsed, json.loads(payload)


def api_client(port: int, body: bytes, seconds: float) -> dict:
    """One keep-alive client posting `body` in sequence for `seconds`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(5):  # warm both workers' connections and caches
        post(connection, f"/predict?{FIELDS}", body, "image/bmp")
    latencies = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        elapsed, _ = post(connection, f"/predict?{FIELDS}", body, "image/bmp")
        latencies.append(elapsed * 1000)
    wall = time.perf_counter() - start
    connection.close()
    return {"requests": len(latencies), "frames_per_s": round(len(latencies) / wall, 1), **percentiles(latencies)}


def read_counts(page) -> dict:
    return page.evaluate(
        """() => Object.fromEntries(['live-frames', 'live-dropped', 'live-errors', 'live-latency', 'live-fps']
             .map((id) => [id, Number(document.getElementById(id).textContent)]))"""
    )


def heap_mb(cdp) -> float:
    """The JS heap after a forced GC, the least of three a second apart: one reading can catch V8 between a
    collection and its release of compiled code or feedback, tens of kB on a 2 MB heap."""
    readings = []
    for _ in range(3):
        cdp.send("HeapProfiler.collectGarbage")
        readings.append(cdp.send("Runtime.getHeapUsage")["usedSize"] / 2**20)
        time.sleep(1.0)
    return min(readings)


def live_page(browser, base: str, transport: str, args, heap_seconds: float) -> dict:
    """One live session with `transport`; the heap is followed over `heap_seconds` (0: not measured)."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base}/live")
    page.select_option("#live-encoding", transport)
    page.click("#live-start")
    page.wait_for_function("() => Number(document.getElementById('live-frames').textContent) >= 5", timeout=60_000)
    time.sleep(args.warmup)
    cdp = page.context.new_cdp_session(page) if heap_seconds else None
    heap_start = heap_mb(cdp) if cdp else None
    session_start = time.monotonic()
    first, start = read_counts(page), time.monotonic()
    samples = []
    while time.monotonic() - start < args.seconds:
        time.sleep(2.0)
        samples.append(read_counts(page)["live-latency"])
    last, wall = read_counts(page), time.monotonic() - start
    encoding = page.evaluate(BROWSER_ENCODING) if transport == "bmp" else None
    result = {
        "transport": transport,
        "seconds": round(wall, 1),
        "answered": last["live-frames"] - first["live-frames"],
        "frames_per_s": round((last["live-frames"] - first["live-frames"]) / wall, 1),
        "camera_frames_per_s": round(
            (last["live-frames"] + last["live-dropped"] - first["live-frames"] - first["live-dropped"]) / wall, 1
        ),
        "p50_ms": float(np.median(samples)),
        "p50_ms_samples": samples,
        "errors": last["live-errors"] - first["live-errors"],
        "page_errors": errors,
    }
    if encoding:
        result["browser_encoding"] = encoding
    if cdp:
        time.sleep(max(0.0, heap_seconds - (time.monotonic() - session_start)))
        heap_end = heap_mb(cdp)
        result["heap"] = {
            "minutes": round((time.monotonic() - session_start) / 60, 2),
            "start_mb": round(heap_start, 2),
            "end_mb": round(heap_end, 2),
            "growth_percent": round(100 * (heap_end - heap_start) / heap_start, 1),
            "answered_in_session": read_counts(page)["live-frames"],
        }
    page.click("#live-stop")
    page.close()
    return result


def api_while_video_plays(browser, base: str, port: int, body: bytes, seconds: float) -> dict:
    """The API client again while a page only plays the fake camera: what the browser's video alone costs the
    server on the same cores (the page's own answers cannot be faster than this)."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{base}/live")
    page.evaluate(
        """async () => {
             const video = document.getElementById('live-video');
             video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
             await video.play();
           }"""
    )
    try:
        return api_client(port, body, seconds)
    finally:
        page.close()


def jpeg_mask_agreement(port: int, count: int) -> dict:
    """Per-image Dice between the served masks of each frame sent as PNG and as JPEG (quality 95)."""
    frames = sorted(path for path in (DATA_DIR / "train").glob("*.tif") if not path.stem.endswith("_mask"))[:count]
    source = "shared data" if frames else "phantoms"
    images = [np.asarray(Image.open(path).convert("L")) for path in frames] or [
        phantom(HEIGHT, WIDTH, seed) for seed in range(count)
    ]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    scores, sizes = [], {"png": [], "jpeg": []}
    for image in images:
        masks = []
        for fmt, options in (("png", {}), ("jpeg", {"quality": 95})):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format=fmt.upper(), **options)
            sizes[fmt].append(buffer.tell())
            _, answer = post(connection, "/predict?include=mask_png", buffer.getvalue(), f"image/{fmt}")
            masks.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["mask_png"])))) > 0)
        scores.append(dice(masks[0], masks[1]))
    connection.close()
    return {
        "frames": len(images),
        "source": source,
        "dice_png_vs_jpeg95": {"mean": round(float(np.mean(scores)), 4), "min": round(float(np.min(scores)), 4)},
        "frames_below_0.95": int(np.sum(np.array(scores) < 0.95)),
        "mean_bytes": {fmt: int(np.mean(values)) for fmt, values in sizes.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--seconds", type=float, default=30.0, help="each measurement window")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of live video before measuring")
    parser.add_argument("--heap-minutes", type=float, default=1.0, help="live session the JS heap is followed over")
    parser.add_argument("--jpeg-frames", type=int, default=40, help="frames for the PNG/JPEG mask agreement")
    parser.add_argument(
        "--split-cores", action="store_true", help="server on half the cores, browser and API client on the rest"
    )
    args = parser.parse_args()
    if not CHROMIUM.exists():
        print(f"bench_live: skipped, {CHROMIUM} is not installed (apt-get install chromium)", file=sys.stderr)
        return
    from playwright.sync_api import sync_playwright

    ensure_onnx(args.model_dir)
    frames = camera_frames()
    body = page_frame(frames[0])
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "NERVE_MODEL_DIR": str(args.model_dir),
        "NERVE_RUNTIME": "onnxruntime",
        "NERVE_SECRET_KEY": "bench",  # both workers must accept the page's session
    }
    cores = sorted(os.sched_getaffinity(0))
    half = len(cores) // 2 if args.split_cores else len(cores)
    server_cores, client_cores = cores[:half], (cores[half:] or cores)
    if args.split_cores:
        env["NERVE_INFERENCE_THREADS"] = str(len(server_cores))
    os.sched_setaffinity(0, server_cores)  # the server's processes inherit it
    server = start_gunicorn(env)
    os.sched_setaffinity(0, client_cores)  # and the browser's and the API client's this one
    results: dict = {
        "cpus": os.cpu_count(),
        "server_cores": server_cores,
        "client_cores": client_cores,
        "load_average_before": os.getloadavg(),
    }
    try:
        wait_ready(port, server, time.monotonic(), 120.0)
        base = f"http://127.0.0.1:{port}"
        results["api_before"] = api_client(port, body, args.seconds)
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
            clip = Path(tmp) / "camera.y4m"
            clip.write_bytes(y4m_bytes(frames, fps=CAMERA_FPS))
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=[
                    *fake_camera_args(clip),
                    "--use-fake-ui-for-media-stream",
                    "--disable-renderer-backgrounding",
                    "--disable-background-timer-throttling",
                ],
            )
            results["live"] = live_page(browser, base, "bmp", args, args.heap_minutes * 60)
            results["live_png"] = live_page(browser, base, "png", args, 0)
            results["api_while_video_plays"] = api_while_video_plays(browser, base, port, body, args.seconds)
            browser.close()
        results["api_after"] = api_client(port, body, args.seconds)
        results["jpeg"] = jpeg_mask_agreement(port, args.jpeg_frames)
    finally:
        stop_server(server)
    api = max(results["api_before"], results["api_after"], key=lambda run: run["frames_per_s"])
    reference_fps = min(CAMERA_FPS, api["frames_per_s"])
    results["targets"] = {
        "api_reference": "the faster API run",
        "fps_ratio": round(results["live"]["frames_per_s"] / reference_fps, 3),
        "fps_ratio_target": ">= 0.85",
        "p50_ratio": round(results["live"]["p50_ms"] / api["p50"], 3),
        "p50_ratio_target": "<= 1.3",
        "png_fps_ratio": round(results["live_png"]["frames_per_s"] / reference_fps, 3),
        "png_p50_ratio": round(results["live_png"]["p50_ms"] / api["p50"], 3),
        "heap_growth_target": "< 10 % over 10 minutes",
    }
    results["load_average_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
