"""The app under gunicorn with gunicorn.conf.py: TensorFlow only after fork, workers that share the CSRF
secret, a killed worker replaced while the other keeps answering, a request over its time budget answered
cleanly, and a damaged model stopping start-up with a message that names it."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.app.conftest import tiff_bytes
from tests.conftest import ROOT, phantom

READY_WITHIN_S = 120  # bounded; importing TensorFlow in two workers on a busy 2-core machine is slow
TOKEN = "gunicorn-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uses_tensorflow(pid: int) -> bool:
    return "libtensorflow" in Path(f"/proc/{pid}/maps").read_text()


def worker_pids(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


class Server:
    def __init__(self, model_dir: Path, log: Path, **settings: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.access_log = log.with_suffix(".access")
        env = {k: v for k, v in os.environ.items() if not k.startswith("NERVE_")}
        env.update(
            PORT=str(self.port),
            NERVE_MODEL_DIR=str(model_dir),
            NERVE_WORKERS="2",
            NERVE_THREADS="2",
            NERVE_API_TOKEN=TOKEN,
            GUNICORN_CMD_ARGS=f"--access-logfile {self.access_log} --access-logformat '%(p)s %(U)s %(s)s'",
        )
        env.update(settings)
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py", "app:create_app()"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def call(self, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def serving_pids(self) -> set[str]:
        lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
        return {line.split()[0] for line in lines if line.endswith("/readyz 200")}

    def wait(self, condition, what: str, seconds: float = READY_WITHIN_S) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"gunicorn exited early:\n{self.log.read_text()[-3000:]}"
            try:
                if condition():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"{what} not within {seconds} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()


def test_gunicorn_workers(tiny_model_dir, tmp_path):
    server = Server(tiny_model_dir, tmp_path / "gunicorn.log")
    try:
        # Both workers serving: fresh connections to /readyz until each pid has answered it.
        server.wait(lambda: server.call("/readyz")[0] == 200 and len(server.serving_pids()) == 2, "both workers ready")
        master = server.process.pid
        workers = worker_pids(master)
        assert len(workers) == 2
        assert not uses_tensorflow(master), "the master must not import TensorFlow (fork safety)"
        assert all(uses_tensorflow(pid) for pid in workers)

        # The page's CSRF token, made by one worker, is accepted by both on the page's endpoint (one key, made
        # before the fork), and by neither on the API.
        status, page = server.call("/")
        assert status == 200
        csrf = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1).decode()
        tiff = tiff_bytes(phantom(420, 580))
        for _ in range(8):
            assert server.call("/page/predict", tiff, {"Content-Type": "image/tiff", "X-CSRFToken": csrf})[0] == 200
        assert server.call("/predict", tiff, {"Content-Type": "image/tiff", "X-CSRFToken": csrf})[0] == 401
        auth = {"Content-Type": "image/tiff", "Authorization": f"Bearer {TOKEN}"}

        # Real multipart parsing of a part over Werkzeug's 500 kB spooling size (a 16-bit 1160 x 840 TIFF).
        big = tiff_bytes(phantom(840, 1160).astype("uint16") * 257)
        boundary = "b0undary"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.tif"\r\n'
                "Content-Type: image/tiff\r\n\r\n"
            ).encode()
            + big
            + f"\r\n--{boundary}--\r\n".encode()
        )
        status, payload = server.call(
            "/predict", body, {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        assert len(big) > 500_000 and status == 200 and b'"width":1160' in payload, payload[:300]

        # A killed worker is replaced, and the other one answers meanwhile.
        os.kill(workers[0], signal.SIGKILL)
        for _ in range(4):
            assert server.call("/predict", tiff, auth)[0] == 200
        server.wait(lambda: len(set(worker_pids(master)) - set(workers)) == 1, "a replacement worker")
    finally:
        code = server.stop()
    assert code == 0, server.log.read_text()[-3000:]


def test_request_over_its_budget_gets_a_clean_503(tiny_model_dir, tmp_path):
    """A 1 ms budget: every prediction runs past it (the network alone takes longer), and each is answered
    with the JSON error while the worker keeps serving."""
    server = Server(tiny_model_dir, tmp_path / "gunicorn.log", NERVE_WORKERS="1", NERVE_REQUEST_TIMEOUT="0.001")
    try:
        server.wait(lambda: server.call("/readyz")[0] == 200, "the worker ready")
        auth = {"Content-Type": "image/tiff", "Authorization": f"Bearer {TOKEN}"}
        for _ in range(3):
            status, body = server.call("/predict", tiff_bytes(phantom(420, 580)), auth)
            assert status == 503, body[:300]
            assert json.loads(body)["error"]["code"] == "request_timeout"
        assert server.call("/readyz")[0] == 200
    finally:
        code = server.stop()
    assert code == 0, server.log.read_text()[-3000:]


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_damaged_model_stops_start_up_with_a_clear_message(tiny_model_dir, tmp_path, damage):
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    if damage == "missing":
        (model_dir / "unet.keras").unlink()
        expected = "model weights file is missing"
    else:
        weights = model_dir / "unet.keras"
        weights.write_bytes(weights.read_bytes()[:-100] + b"\0" * 100)
        expected = "does not match metadata.json"
    server = Server(model_dir, tmp_path / "gunicorn.log")
    try:
        code = server.process.wait(timeout=READY_WITHIN_S)
    finally:
        server.stop()
    log = server.log.read_text()
    assert code != 0 and "Worker failed to boot" in log, log[-3000:]
    assert expected in log and str(model_dir / "unet.keras") in log, log[-3000:]
