"""/openapi.json is valid OpenAPI 3.1 and true: real responses validate against its schemas."""

from __future__ import annotations

import io

import pytest
from jsonschema import Draft202012Validator

from tests.app.conftest import response_validator, tiff_bytes
from tests.conftest import phantom
from tests.media import compressed_dicom_bytes, dicom_bytes, loop, multipage_tiff_bytes


@pytest.fixture(scope="module")
def spec(app):
    return app.test_client().get("/openapi.json").get_json()


def test_document_shape(spec):
    assert spec["openapi"].startswith("3.1")
    assert {"/predict", "/predict/batch", "/healthz", "/readyz", "/api/model", "/openapi.json"} <= set(spec["paths"])
    for schema in spec["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def multipart(**fields):
    return {"data": fields}


def image(data: bytes):
    return (io.BytesIO(data), "frame.tif")


FRAME = tiff_bytes(phantom(120, 160))
ALL = "mask_png,overlay_png,probability_png,rle,contours,image_png"

CASES = [
    ("get", "/healthz", {}, 200),
    ("get", "/readyz", {}, 200),
    ("get", "/api/model", {}, 200),
    ("post", "/predict", multipart(image=image(FRAME)), 200),
    ("post", "/predict", multipart(image=image(FRAME), include=ALL, threshold="0.51"), 200),
    ("post", "/predict", multipart(image=image(FRAME), threshold="0.99", include=ALL), 200),
    ("post", "/predict", {"data": FRAME, "content_type": "image/tiff"}, 200),
    ("post", "/predict", multipart(), 400),
    ("post", "/predict", multipart(image=image(multipage_tiff_bytes(loop(3))), frames="all", include=ALL), 200),
    ("post", "/predict", multipart(image=image(dicom_bytes(loop(2))), frames="all", smoothing="3"), 200),
    ("post", "/predict", multipart(image=image(FRAME), frames="sometimes"), 400),
    ("post", "/predict", multipart(image=image(compressed_dicom_bytes())), 415),
    ("post", "/predict", multipart(image=image(FRAME), threshold="2"), 400),
    ("post", "/predict", multipart(image=image(b"text")), 415),
    ("post", "/predict", {"data": b"text", "content_type": "text/plain"}, 415),
    ("post", "/predict/batch", {"data": {"images": [image(FRAME), image(b""), image(FRAME)], "include": ALL}}, 200),
    ("post", "/predict/batch", multipart(), 400),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), CASES)
def test_responses_match_the_document(spec, client, method, path, kwargs, status):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    response_validator(spec, path, method, status).validate(response.get_json())


def test_limit_errors_match_the_document(spec, app, client, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_PIXELS", 100)
    response = client.post("/predict", data={"image": image(FRAME)})
    assert response.status_code == 413
    response_validator(spec, "/predict", "post", 413).validate(response.get_json())
    monkeypatch.setitem(app.config, "MAX_PIXELS", 10**6)
    monkeypatch.setitem(app.config, "MAX_FRAMES", 2)
    response = client.post("/predict", data={"image": image(multipage_tiff_bytes(loop(3))), "frames": "all"})
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "too_many_frames"
    response_validator(spec, "/predict", "post", 413).validate(response.get_json())
    monkeypatch.setitem(app.config, "API_TOKEN", "t")
    response = client.post("/predict", data={"image": image(FRAME)})
    assert response.status_code == 401
    response_validator(spec, "/predict", "post", 401).validate(response.get_json())


def test_schema_rejects_contract_drift(spec):
    """The schemas are strict enough to catch a renamed or extra field."""
    validator = response_validator(spec, "/predict", "post", 200)
    good = {
        "nerve_present": False,
        "nerve_probability": 0.1,
        "mask_area_px": 0,
        "bbox": None,
        "width": 2,
        "height": 2,
        "model": {"name": "m", "version": "1", "sha256": "0" * 64},
        "timing_ms": {"decode": 1.0, "infer": 1.0, "total": 2.0},
    }
    validator.validate(good)
    validator.validate(
        {"frame_count": 1, "smoothing_window": 1, "frames": [{"frame": 0, **good}], "timing_ms": good["timing_ms"]}
    )
    assert not validator.is_valid(
        {"frame_count": 1, "smoothing_window": 1, "frames": [good], "timing_ms": good["timing_ms"]}
    ), "a loop frame needs its index"
    assert not validator.is_valid({**good, "surprise": 1})
    assert not validator.is_valid({k: v for k, v in good.items() if k != "bbox"})
    assert not validator.is_valid({**good, "bbox": [1, 2, 3]})
