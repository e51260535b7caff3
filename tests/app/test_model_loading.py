"""Start-up: a missing or damaged model stops it with a clear message; /readyz is 503 until warmed up."""

from __future__ import annotations

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
    for response in (client.get("/readyz"), client.get("/api/model"),
                     client.post("/predict", data=phantom_tiff, content_type="image/tiff")):
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "model_not_ready"
    release.set()
    wait_until_ready(client)
    assert client.post("/predict", data=phantom_tiff, content_type="image/tiff").status_code == 200


def test_background_load_failure_is_reported_by_readyz(tiny_model_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise ModelArtifactError("unet.keras: model cannot be loaded: bad zip")

    monkeypatch.setattr(Segmenter, "load", broken)
    client = create_app({"MODEL_DIR": tiny_model_dir, "MODEL_LOADING": "background"}).test_client()
    deadline = time.monotonic() + 30
    while "failed" not in client.get("/readyz").get_json()["error"]["message"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    response = client.get("/readyz")
    assert response.status_code == 503 and "bad zip" in response.get_json()["error"]["message"]
