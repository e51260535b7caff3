"""Environment variables -> settings, with defaults and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_REQUEST_TIMEOUT_S,
    ConfigError,
    settings_from_env,
)
from model.artifact import MODEL_DIR
from model.decode.isolated import DEFAULT_DECODE_MEMORY_BYTES


def test_defaults():
    settings = settings_from_env({})
    assert settings == {
        "MODEL_DIR": MODEL_DIR,
        "MODEL_LOADING": "eager",
        "SECRET_KEY": None,
        "API_TOKEN": None,
        "MAX_CONTENT_LENGTH": DEFAULT_MAX_UPLOAD_BYTES,
        "MAX_PIXELS": DEFAULT_MAX_PIXELS,
        "MAX_BATCH": DEFAULT_MAX_BATCH,
        "REQUEST_TIMEOUT": DEFAULT_REQUEST_TIMEOUT_S,
        "MAX_FRAMES": 300,
        "CINE_SMOOTHING": 1,
        "RUNTIME": "auto",
        "INFERENCE_THREADS": None,
        "HTTPS": False,
        "MAX_RESPONSE_BYTES": DEFAULT_MAX_RESPONSE_BYTES,
        "DECODE_MEMORY_BYTES": DEFAULT_DECODE_MEMORY_BYTES,
        "DECODE_ISOLATION": True,
    }
    assert DEFAULT_MAX_UPLOAD_BYTES == 20 * 1024 * 1024 and DEFAULT_MAX_BATCH == 32


def test_values_from_environment():
    settings = settings_from_env(
        {
            "NERVE_MODEL_DIR": "/models/v2",
            "NERVE_MODEL_LOADING": "background",
            "NERVE_SECRET_KEY": "k",
            "NERVE_API_TOKEN": "t",
            "NERVE_MAX_UPLOAD_BYTES": "1000",
            "NERVE_MAX_PIXELS": " 2000 ",
            "NERVE_MAX_BATCH": "4",
            "NERVE_MAX_FRAMES": "50",
            "NERVE_CINE_SMOOTHING": "3",
            "NERVE_REQUEST_TIMEOUT": "2.5",
            "NERVE_RUNTIME": "keras",
            "NERVE_INFERENCE_THREADS": "1",
            "NERVE_HTTPS": "1",
            "NERVE_MAX_RESPONSE_BYTES": "5000",
            "NERVE_DECODE_MEMORY_BYTES": "300000000",
        }
    )
    assert settings == {
        "MODEL_DIR": Path("/models/v2"),
        "MODEL_LOADING": "background",
        "SECRET_KEY": "k",
        "API_TOKEN": "t",
        "MAX_CONTENT_LENGTH": 1000,
        "MAX_PIXELS": 2000,
        "MAX_BATCH": 4,
        "REQUEST_TIMEOUT": 2.5,
        "MAX_FRAMES": 50,
        "CINE_SMOOTHING": 3,
        "RUNTIME": "keras",
        "INFERENCE_THREADS": 1,
        "HTTPS": True,
        "MAX_RESPONSE_BYTES": 5000,
        "DECODE_MEMORY_BYTES": 300_000_000,
        "DECODE_ISOLATION": True,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NERVE_MAX_BATCH", "0"),
        ("NERVE_MAX_PIXELS", "lots"),
        ("NERVE_MAX_UPLOAD_BYTES", "-5"),
        ("NERVE_MODEL_LOADING", "lazy"),
        ("NERVE_REQUEST_TIMEOUT", "0"),
        ("NERVE_REQUEST_TIMEOUT", "nan"),
        ("NERVE_REQUEST_TIMEOUT", "inf"),
        ("NERVE_REQUEST_TIMEOUT", "soon"),
        ("NERVE_MAX_FRAMES", "0"),
        ("NERVE_CINE_SMOOTHING", "4"),
        ("NERVE_CINE_SMOOTHING", "99"),
        ("NERVE_RUNTIME", "tensorrt"),
        ("NERVE_INFERENCE_THREADS", "0"),
        ("NERVE_INFERENCE_THREADS", "2.5"),
        ("NERVE_HTTPS", "yes"),
        ("NERVE_HTTPS", "2"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        settings_from_env({name: value})


@pytest.mark.parametrize(("value", "https"), [("", False), ("0", False), (" 1 ", True)])
def test_https_switch(value, https):
    assert settings_from_env({"NERVE_HTTPS": value})["HTTPS"] is https
