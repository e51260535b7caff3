"""The container's entry command, run as it is written in the Dockerfile but outside Docker (tests/deploy/server.py
says how). The image has the model's ONNX export and no TensorFlow, so the model folder is the committed one and
TensorFlow, Keras and the exporters are made unimportable in the server's processes. It then checks what a
container host checks: /healthz, /readyz turning 200, one real /predict, /metrics summed over the workers, a
clean stop on SIGTERM; and that the launcher does not outlive a dead gunicorn, so that the host restarts the
container.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.server import ROOT, STOP_WITHIN_S, EntryCommand, call, log_tail, multipart, needs_nginx, phantom_tiff


@needs_nginx
def test_dockerfile_entry_command_serves_readyz_and_predict(model_dir_env, tmp_path):
    server = EntryCommand(tmp_path / "server.log", **model_dir_env)
    try:
        print(f"entry command ready in {server.wait_ready():.1f} s on port {server.port}")
        assert set(server.child_pids()) == {"gunicorn", "nginx"}

        status, body = call(f"{server.base}/healthz")
        assert status == 200, body[:300]

        body, content_type = multipart("image", "phantom.tif", phantom_tiff(), "image/tiff")
        status, payload = call(f"{server.base}/predict", body, content_type)
        assert status == 200, payload[:500]
        result = json.loads(payload)
        assert isinstance(result["nerve_present"], bool)
        assert (result["width"], result["height"]) == (580, 420)
        assert 0.0 <= result["nerve_probability"] <= 1.0

        # Metrics through nginx, summed over gunicorn's workers in the launcher's private directory.
        status, body = call(f"{server.base}/metrics")
        assert status == 200, body[:300]
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }
        predicted = (("method", "POST"), ("route", "/predict"), ("status", "200"))
        assert samples[("nerve_http_requests_total", predicted)] == 1
        assert len([key for key in samples if key[0] == "nerve_worker_ready"]) == 2  # one per worker
        runtime_dir = server.runtime_dir()
        assert list((runtime_dir / "metrics").glob("*.db")), "the workers keep their metrics in the private directory"
    finally:
        returncode = server.stop()
    assert returncode == 0, f"unclean exit {returncode} after SIGTERM:\n{log_tail(server.log)}"
    assert not runtime_dir.exists(), "the launcher leaves its private directory behind"


@needs_nginx
def test_the_launcher_exits_when_gunicorn_dies(model_dir_env, tmp_path):
    """A container whose app server died must exit (non-zero), not keep a proxy answering 502s."""
    server = EntryCommand(tmp_path / "server.log", **model_dir_env)
    try:
        server.wait_ready()
        pids = server.child_pids()
        os.kill(pids["gunicorn"], signal.SIGKILL)
        returncode = server.process.wait(timeout=STOP_WITHIN_S)
    finally:
        server.stop()
    assert returncode != 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pids['nginx']}"):
        time.sleep(0.2)
    assert not os.path.exists(f"/proc/{pids['nginx']}"), "nginx outlived the launcher"
    with pytest.raises(OSError):
        call(f"{server.base}/healthz")


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
