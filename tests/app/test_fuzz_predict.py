"""Fuzzing POST /predict with hypothesis, bounded by an example count for CI.

Damaged images, noise and files built structure by structure (TIFF directories, APNG chunk sequences, DICOM
elements: tests/fuzzing_structures.py), as a multipart file or a raw body, with random `threshold` and
`include`, one frame or `frames=all`: the answer is 200, 400, 413 or 415 with the documented JSON, never a 500
or anything else.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from model.cine import LOOP_PIXEL_FACTOR
from tests.fuzzing import FUZZ_MAX_PIXELS, files
from tests.fuzzing_structures import FUZZ_MAX_FRAMES, structured_files

# About half the requests carry valid parameters, so most reach the decoder and the network.
thresholds = st.one_of(
    st.none(),
    st.sampled_from(["0.3", "0.5", "0.9"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=20),
)
includes = st.one_of(
    st.none(),
    st.lists(
        st.sampled_from(["mask_png", "rle", "contours", "overlay_png", "probability_png", "image_png"]), max_size=3
    ).map(",".join),
    st.text(max_size=20),
)


@pytest.fixture(scope="module")
def fuzz_client(app):
    return app.test_client()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    data=st.one_of(files, structured_files),
    threshold=thresholds,
    include=includes,
    frames=st.sampled_from([None, "all"]),
    raw_body=st.booleans(),
)
def test_predict_never_fails_with_a_500(app, fuzz_client, monkeypatch, data, threshold, include, frames, raw_body):
    fields = {"threshold": threshold, "include": include, "frames": frames}
    fields = {k: v for k, v in fields.items() if v is not None}
    with monkeypatch.context() as patch:
        patch.setitem(app.config, "MAX_PIXELS", FUZZ_MAX_PIXELS)
        patch.setitem(app.config, "MAX_FRAMES", FUZZ_MAX_FRAMES)
        if raw_body:
            response = fuzz_client.post("/predict", data=data, content_type="image/tiff", query_string=fields)
        else:
            response = fuzz_client.post("/predict", data={"image": (io.BytesIO(data), "f.tif"), **fields})
    body = response.get_json()
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400, 413, 415), (response.status_code, body)
    if response.status_code == 200:
        answers = body["frames"] if frames else [body]
        assert 1 <= len(answers) <= FUZZ_MAX_FRAMES and all("model" in answer for answer in answers)
        pixels = [answer["width"] * answer["height"] for answer in answers]
        assert max(pixels) <= FUZZ_MAX_PIXELS and sum(pixels) <= LOOP_PIXEL_FACTOR * FUZZ_MAX_PIXELS
    else:
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}
