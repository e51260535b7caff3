"""Fuzzing POST /predict with hypothesis, bounded by an example count for CI.

Damaged images and noise, as a multipart file or a raw body, with random `threshold` and `include`: the
answer is 200, 400, 413 or 415 with the documented JSON, never a 500 or anything else.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.fuzzing import FUZZ_MAX_PIXELS, files

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
@given(data=files, threshold=thresholds, include=includes, raw_body=st.booleans())
def test_predict_never_fails_with_a_500(app, fuzz_client, monkeypatch, data, threshold, include, raw_body):
    fields = {k: v for k, v in {"threshold": threshold, "include": include}.items() if v is not None}
    with monkeypatch.context() as patch:
        patch.setitem(app.config, "MAX_PIXELS", FUZZ_MAX_PIXELS)
        if raw_body:
            response = fuzz_client.post("/predict", data=data, content_type="image/tiff", query_string=fields)
        else:
            response = fuzz_client.post("/predict", data={"image": (io.BytesIO(data), "f.tif"), **fields})
    body = response.get_json()
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400, 413, 415), (response.status_code, body)
    if response.status_code == 200:
        assert body["width"] * body["height"] <= FUZZ_MAX_PIXELS and "model" in body
    else:
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
