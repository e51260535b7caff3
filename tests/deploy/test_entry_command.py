"""The container's entry command, run as it is written in the Dockerfile but outside Docker.

No Docker engine is available here, so this runs the Dockerfile's CMD from the repository root (the image's
WORKDIR holds the same files), with the image's ENV, PORT set to a free port as Cloud Run would, and the
test interpreter's environment (.venv, which `make test` builds from requirements*.txt) on PATH. The image
has the model's ONNX export and no TensorFlow: so the model folder here gets an export as the Dockerfile's
first stage makes it, and TensorFlow, Keras and the exporters are made unimportable in the server's
processes. It then checks what a container host checks: /healthz, /readyz turning 200, one real /predict,
a clean stop.
"""

from __future__ import annotations

import io
import json
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

from tests.conftest import phantom
from tests.deploy import dockerfile

ROOT = dockerfile.ROOT
READY_WITHIN_S = 120  # bounded; a loaded 2-core machine needs ~10-40 s to import TensorFlow and warm up
STOP_WITHIN_S = 40  # gunicorn's graceful timeout is 30 s by default

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


#: Put first on PYTHONPATH: Python runs sitecustomize at start-up in every process of the server.
BLOCK_TENSORFLOW = """
import sys
BLOCKED = {"tensorflow", "keras", "tf2onnx", "onnx", "jax", "torch"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed in the serving image")
sys.meta_path.insert(0, Block())
"""


@pytest.fixture(scope="module")
def model_dir_env(tmp_path_factory) -> dict[str, str]:
    """The image's model folder is the repository's model/, committed ONNX export included; and the blocker
    that makes TensorFlow, Keras and the exporters unimportable, as they are in the image."""
    blocker = tmp_path_factory.mktemp("no_tensorflow")
    (blocker / "sitecustomize.py").write_text(BLOCK_TENSORFLOW)
    return {"NERVE_MODEL_DIR": str(ROOT / "model"), "PYTHONPATH": str(blocker)}


def test_dockerfile_entry_command_serves_readyz_and_predict(model_dir_env, tmp_path):
    argv = dockerfile.cmd()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("NERVE_")}
    env.update(dockerfile.env())
    env.update(model_dir_env)
    env["PORT"] = str(port)
    # The image installs requirements.txt into its python; here the test interpreter's environment plays it.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    log = tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"

    with open(log, "wb") as log_file:
        server = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        started = time.monotonic()
        status = None
        while time.monotonic() - started < READY_WITHIN_S:
            if server.poll() is not None:
                pytest.fail(f"{argv} exited with {server.returncode} before ready:\n{log_tail(log)}")
            try:
                status, _ = call(f"{base}/readyz")
            except OSError:  # not listening yet
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        ready_s = time.monotonic() - started
        assert status == 200, f"/readyz not 200 within {READY_WITHIN_S} s (last {status}):\n{log_tail(log)}"
        print(f"entry command ready in {ready_s:.1f} s on port {port}")

        status, body = call(f"{base}/healthz")
        assert status == 200, body[:300]

        body, content_type = multipart("image", "phantom.tif", phantom_tiff(), "image/tiff")
        status, payload = call(f"{base}/predict", body, content_type)
        assert status == 200, payload[:500]
        result = json.loads(payload)
        assert isinstance(result["nerve_present"], bool)
        assert (result["width"], result["height"]) == (580, 420)
        assert 0.0 <= result["nerve_probability"] <= 1.0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # what docker stop, Kubernetes and Cloud Run send
        try:
            server.wait(timeout=STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
            pytest.fail(f"server did not stop within {STOP_WITHIN_S} s of SIGTERM:\n{log_tail(log)}")
    assert server.returncode == 0, f"unclean exit {server.returncode} after SIGTERM:\n{log_tail(log)}"


def test_the_folder_cli_runs_in_the_serving_image_without_tensorflow(model_dir_env, tmp_path):
    """The image has no TensorFlow or Keras; `python -m model.predict` must still run there (onnxruntime)."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.tif").write_bytes(phantom_tiff(186, 256))
    (src / "b.tif").write_bytes(b"not a tiff")
    env = {key: value for key, value in os.environ.items() if not key.startswith("NERVE_")}
    env["PYTHONPATH"] = os.pathsep.join([model_dir_env["PYTHONPATH"], str(ROOT)])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "model.predict",
            "--input",
            str(src),
            "--out",
            str(tmp_path / "out"),
            "--model",
            model_dir_env["NERVE_MODEL_DIR"],
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-2000:]  # b.tif is unreadable; a.tif is predicted
    assert "b.tif" in done.stderr and "not installed" not in done.stderr
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert len(rows) == 3 and (tmp_path / "out" / "masks" / "a_mask.png").exists()
