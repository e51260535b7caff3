"""The Dockerfile's entry command run outside Docker, for the deploy tests: start, wait until ready, stop.

No Docker engine is available here, so the CMD runs from the repository root (the image's WORKDIR holds the
same files), with the image's ENV, PORT set to a free port as Cloud Run would, and the test interpreter's
environment (.venv, which `make test` builds from requirements*.txt) first on PATH, where the image has its
python.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from deploy.serve import find_nginx
from tests.conftest import phantom
from tests.deploy import dockerfile

ROOT = dockerfile.ROOT
READY_WITHIN_S = 120  # bounded; a loaded 2-core machine needs seconds to start the workers and warm up
STOP_WITHIN_S = 40  # nginx's shutdown (8 s) and gunicorn's graceful timeout (30 s), as docs/deploy.md allows

needs_nginx = pytest.mark.skipif(
    find_nginx() is None, reason="nginx is not installed (make test installs it when run as root with apt-get)"
)

_open = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with _open(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def multipart(field: str, filename: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = "----entrycmd" + os.urandom(8).hex()
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def phantom_tiff(height: int = 420, width: int = 580) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(phantom(height, width)).save(buffer, format="TIFF")
    return buffer.getvalue()


def log_tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


class EntryCommand:
    """The Dockerfile's CMD in its own session (a container's processes), logging into `log`."""

    def __init__(self, log: Path, **settings: str) -> None:
        self.argv = dockerfile.cmd()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {key: value for key, value in os.environ.items() if not key.startswith("NERVE_")}
        env.update(dockerfile.env())
        env.update(settings)
        env["PORT"] = str(self.port)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        with open(log, "wb") as log_file:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self) -> float:
        """Seconds until /readyz answers 200; fails the test with the log if it exits or never does."""
        started = time.monotonic()
        status = None
        while time.monotonic() - started < READY_WITHIN_S:
            if self.process.poll() is not None:
                pytest.fail(f"{self.argv} exited with {self.process.returncode} before ready:\n{log_tail(self.log)}")
            try:
                status, _ = call(f"{self.base}/readyz")
            except OSError:  # not listening yet
                status = None
            if status == 200:
                return time.monotonic() - started
            time.sleep(0.5)
        pytest.fail(f"/readyz not 200 within {READY_WITHIN_S} s (last {status}):\n{log_tail(self.log)}")

    def stop(self) -> int:
        """SIGTERM to the launcher alone, as docker stop, Kubernetes and Cloud Run send it to PID 1."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            pytest.fail(f"server did not stop within {STOP_WITHIN_S} s of SIGTERM:\n{log_tail(self.log)}")

    def child_pids(self) -> dict[str, int]:
        """The launcher's children by name: {"gunicorn": its master, "nginx": its master}."""
        pids = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        comms = {int(pid): Path(f"/proc/{pid}/comm").read_text().strip() for pid in pids}
        return {"nginx" if comm == "nginx" else "gunicorn": pid for pid, comm in comms.items()}

    def runtime_dir(self) -> Path:
        """The private directory the launcher made (nginx's -p prefix, read from its process title)."""
        title = Path(f"/proc/{self.child_pids()['nginx']}/cmdline").read_bytes().replace(b"\0", b" ").split()
        return Path(title[title.index(b"-p") + 1].decode())
