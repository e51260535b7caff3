"""App fixtures: one app per session on the tiny test model, and encoded phantom images."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.conftest import phantom


def tiff_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array)
    return buffer.getvalue()


def pil_bytes(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def decode_png(encoded: str) -> np.ndarray:
    import base64

    with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
        assert image.format == "PNG"
        return np.asarray(image)


@pytest.fixture(scope="session")
def app(tiny_model_dir):
    from app import create_app

    return create_app({"MODEL_DIR": tiny_model_dir, "SECRET_KEY": "test-secret", "TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def phantom_tiff() -> bytes:
    """A scanner-sized (580 x 420) 8-bit grayscale TIFF."""
    return tiff_bytes(phantom(420, 580))
