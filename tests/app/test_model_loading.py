"""Start-up: a missing or damaged model stops it with a clear message; /readyz is 503 until warmed up."""

from __future__ import annotations

import logging
import shutil
import threading
import time

import pytest

from app import create_app
from model.artifact import ModelArtifactError
from model.segmenter import Segmenter


def test_missing_model_fails_at_start_up(tmp_path):
    with pytest.raises(ModelArtifactError, match="metadata file is missing"):
        create_app({"MODEL_DIR": tmp_path})


def test_truncated_weights_fail_at_start_up(tiny_model_dir, tmp_path):
    damaged = shutil.copytree(tiny_model_dir, tmp_path / "model")
    weights = damaged / "unet.keras"
    weights.write_bytes(weights.read_bytes()[:1000])  # an interrupted copy
    with pytest.raises(ModelArtifactError, match="sha256 .* does not match"):
        create_app({"MODEL_DIR": damaged})


def wait_until_ready(client, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            return response
        time.sleep(0.05)
    raise AssertionError("not ready in time")


def test_background_loading_is_503_until_warmed_up(tiny_model_dir, phantom_tiff, monkeypatch):
    release = threading.Event()
    real_load = Segmenter.load.__func__

    def slow_load(cls, *args, **kwargs):
        assert release.wait(60)
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(Segmenter, "load", classmethod(slow_load))
    client = create_app({"MODEL_DIR": tiny_model_dir, "MODEL_LOADING": "background"}).test_client()
    assert client.get("/healthz").status_code == 200
    for response in (
        client.get("/readyz"),
        client.get("/api/model"),
        client.post("/predict", data=phantom_tiff, content_type="image/tiff"),
    ):
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "model_not_ready"
    release.set()
    wait_until_ready(client)
    assert client.post("/predict", data=phantom_tiff, content_type="image/tiff").status_code == 200


def test_background_load_failure_is_reported_by_readyz_with_the_detail_only_in_the_log(
    tiny_model_dir, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise ModelArtifactError("/srv/model/unet.keras: model cannot be loaded: bad zip (zipfile 3.11)")

    monkeypatch.setattr(Segmenter, "load", broken)
    with caplog.at_level(logging.ERROR, logger="app.model_service"):
        client = create_app({"MODEL_DIR": tiny_model_dir, "MODEL_LOADING": "background"}).test_client()
        deadline = time.monotonic() + 30
        while "failed" not in client.get("/readyz").get_json()["error"]["message"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    for response in (client.get("/readyz"), client.post("/predict", data=b"x", content_type="image/tiff")):
        assert response.status_code == 503
        error = response.get_json()["error"]
        assert error.pop("request_id") == response.headers["X-Request-ID"]
        assert error == {
            "code": "model_not_ready",
            "message": "the model failed to load; the service's log says why",
        }
    assert "bad zip" in caplog.text and "/srv/model/unet.keras" in caplog.text


def test_the_app_serves_through_onnxruntime_when_an_up_to_date_export_is_there(tiny_model_dir, tmp_path, phantom_tiff):
    from model import onnx_export

    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    assert onnx_export.main(["--model-dir", str(folder)]) == 0
    answers = {}
    for runtime in ("auto", "keras"):
        client = create_app({"MODEL_DIR": folder, "RUNTIME": runtime, "INFERENCE_THREADS": 1}).test_client()
        answers[runtime] = (
            client.get("/readyz").get_json()["runtime"],
            client.post("/predict", data=phantom_tiff, content_type="image/tiff").get_json(),
        )
    assert answers["auto"][0] == "onnxruntime" and answers["keras"][0] == "keras"
    assert answers["auto"][1]["model"] == answers["keras"][1]["model"]  # the same weights, by sha256
    assert answers["auto"][1]["nerve_probability"] == pytest.approx(answers["keras"][1]["nerve_probability"], abs=1e-5)


def test_requiring_onnxruntime_without_an_export_stops_start_up(tiny_model_dir):
    with pytest.raises(ModelArtifactError, match="unet.onnx does not exist"):
        create_app({"MODEL_DIR": tiny_model_dir, "RUNTIME": "onnxruntime"})
