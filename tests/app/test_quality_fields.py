"""`expected_dice` and `reliable` in every answer shape, as the OpenAPI document describes them, equal to the
Segmenter's own assessment; absent for a model folder without a quality estimator."""

from __future__ import annotations

import io

import numpy as np
import pytest

from model.segmenter import Segmenter
from tests.app.conftest import response_validator, tiff_bytes
from tests.conftest import phantom
from tests.media import loop, multipage_tiff_bytes

THRESHOLD = "0.515"  # the untrained test model's maps lie in 0.50..0.52: partial masks, so outlines to assess
FRAMES = [phantom(120, 160, seed=s) for s in range(3)]


@pytest.fixture
def reference(quality_model_dir) -> Segmenter:
    return Segmenter.load(quality_model_dir, runtime="keras")


@pytest.fixture
def spec(quality_app) -> dict:
    return quality_app.test_client().get("/openapi.json").get_json()


def assert_assessed(answer: dict, expected, cut: float) -> None:
    assert answer["expected_dice"] == pytest.approx(expected.assessment.expected_dice, abs=1e-6)
    assert answer["reliable"] is expected.assessment.reliable
    assert answer["reliable"] == (answer["expected_dice"] >= cut)


def test_single_batch_and_loop_answers_carry_the_segmenters_assessment(quality_app, reference, spec):
    client = quality_app.test_client()
    cut = reference.quality.cut
    singles = []
    for frame in FRAMES:
        response = client.post(
            "/predict", data={"image": (io.BytesIO(tiff_bytes(frame)), "f.tif"), "threshold": THRESHOLD}
        )
        response_validator(spec, "/predict", "post", 200).validate(response.get_json())
        assert_assessed(response.get_json(), reference.predict(frame / 255.0, float(THRESHOLD)), cut)
        singles.append(response.get_json())
    assert len({round(s["expected_dice"], 9) for s in singles}) > 1, "the estimate follows the frame"

    batch = {"images": [(io.BytesIO(tiff_bytes(f)), f"{i}.tif") for i, f in enumerate(FRAMES)], "threshold": THRESHOLD}
    response = client.post("/predict/batch", data=batch)
    response_validator(spec, "/predict/batch", "post", 200).validate(response.get_json())
    for result, single in zip(response.get_json()["results"], singles, strict=True):
        assert (result["expected_dice"], result["reliable"]) == (single["expected_dice"], single["reliable"])

    frames = loop(4)
    for window in (1, 3):
        data = {
            "image": (io.BytesIO(multipage_tiff_bytes(frames)), "loop.tif"),
            "threshold": THRESHOLD,
            "smoothing": str(window),
        }
        response = client.post("/predict?frames=all", data=data)
        response_validator(spec, "/predict", "post", 200).validate(response.get_json())
        grays = [f / 255.0 for f in frames]
        expected = reference.predict_sequence(grays, float(THRESHOLD), window=window)
        for answer, prediction in zip(response.get_json()["frames"], expected, strict=True):
            assert_assessed(answer, prediction, cut)


def test_the_document_describes_the_two_fields(spec):
    result = spec["components"]["schemas"]
    described = [s for s in result.values() if "expected_dice" in s.get("properties", {})]
    assert described, "a schema describes expected_dice"
    for schema in described:
        assert schema["properties"]["expected_dice"]["maximum"] == 1
        assert schema["properties"]["reliable"]["type"] == "boolean"
        assert "expected_dice" not in schema.get("required", []), "absent for models without an estimator"


def test_a_model_without_an_estimator_answers_without_the_fields(client):
    frame = {"image": (io.BytesIO(tiff_bytes(FRAMES[0])), "f.tif"), "threshold": THRESHOLD}
    answer = client.post("/predict", data=frame).get_json()
    assert "expected_dice" not in answer and "reliable" not in answer
    assert answer["mask_area_px"] > 0, "an outline was returned, and still no estimate"


def test_the_estimate_never_changes_the_mask(quality_app, client):
    data = tiff_bytes(FRAMES[1])
    with_estimate = quality_app.test_client().post(
        "/predict", data={"image": (io.BytesIO(data), "f.tif"), "threshold": THRESHOLD}
    )
    without = client.post("/predict", data={"image": (io.BytesIO(data), "f.tif"), "threshold": THRESHOLD})
    assert with_estimate.get_json()["rle"] == without.get_json()["rle"]
    assert np.isfinite(with_estimate.get_json()["expected_dice"])
