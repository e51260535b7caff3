"""POST /predict with frames=all (cine loops: multi-page TIFF, multi-frame DICOM, clips) and DICOM uploads."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from app.options import DEFAULT_INCLUDE
from model.rle import rle_encode
from tests.app.conftest import decode_png, tiff_bytes
from tests.media import compressed_dicom_bytes, dicom_bytes, loop, multipage_tiff_bytes, video_bytes

THRESHOLD = "0.515"  # the untrained test model's maps lie in 0.50..0.52: partial masks
LOOP = loop(5)


def post(client, data: bytes, **fields):
    return client.post("/predict", data={"image": (io.BytesIO(data), "upload"), "threshold": THRESHOLD, **fields})


def code_of(response) -> str:
    return response.get_json()["error"]["code"]


def test_all_frames_of_a_multipage_tiff_in_order_with_single_frame_fields(client):
    body = post(client, multipage_tiff_bytes(LOOP), frames="all", smoothing="1").get_json()
    assert body["frame_count"] == 5 and body["smoothing_window"] == 1
    assert [f["frame"] for f in body["frames"]] == [0, 1, 2, 3, 4]
    for index, frame in enumerate(body["frames"]):
        single = post(client, tiff_bytes(LOOP[index])).get_json()
        assert set(frame) - {"frame"} == set(single)
        for field in ("nerve_present", "mask_area_px", "bbox", "width", "height", "rle", "mask_png", "model"):
            assert frame[field] == single[field], (index, field)
    assert set(body["timing_ms"]) == {"decode", "infer", "total"}


def test_smoothing_is_applied_and_equals_the_segmenters(app, client):
    segmenter = app.extensions["model_service"].segmenter
    expected = segmenter.predict_sequence(list(LOOP / 255.0), float(THRESHOLD), window=3)
    body = post(client, multipage_tiff_bytes(LOOP), frames="all", smoothing="3").get_json()
    assert body["smoothing_window"] == 3
    assert [f["rle"] for f in body["frames"]] == [rle_encode(p.mask) for p in expected]
    unsmoothed = post(client, multipage_tiff_bytes(LOOP), frames="all", smoothing="1").get_json()
    assert [f["nerve_probability"] for f in body["frames"]] != [f["nerve_probability"] for f in unsmoothed["frames"]]


def test_default_smoothing_comes_from_the_configuration(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "CINE_SMOOTHING", 5)
    assert post(client, multipage_tiff_bytes(LOOP), frames="all").get_json()["smoothing_window"] == 5


def test_without_frames_all_a_multi_frame_file_gives_its_first_frame(client):
    first = post(client, tiff_bytes(LOOP[0])).get_json()
    for data in (multipage_tiff_bytes(LOOP), dicom_bytes(LOOP)):
        body = post(client, data).get_json()
        assert "frames" not in body and body["rle"] == first["rle"]
        assert post(client, data, frames="first").get_json()["rle"] == first["rle"]


def test_a_single_frame_file_is_a_loop_of_one(client):
    body = post(client, tiff_bytes(LOOP[0]), frames="all").get_json()
    assert body["frame_count"] == 1 and body["frames"][0]["frame"] == 0


def test_multi_frame_dicom_and_clip_loops(client, tmp_path):
    dicom = post(client, dicom_bytes(LOOP), frames="all", include="rle,probability_png").get_json()
    tiff = post(client, multipage_tiff_bytes(LOOP), frames="all", include="rle,probability_png").get_json()
    assert [f["rle"] for f in dicom["frames"]] == [f["rle"] for f in tiff["frames"]]
    assert decode_png(dicom["frames"][0]["probability_png"]).shape == LOOP.shape[1:]
    clip = post(client, video_bytes(LOOP, tmp_path), frames="all", include="")
    assert clip.status_code == 200 and clip.get_json()["frame_count"] == 5


def test_frame_limit_is_a_413(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_FRAMES", 4)
    for data in (multipage_tiff_bytes(LOOP), dicom_bytes(LOOP)):
        response = post(client, data, frames="all")
        assert response.status_code == 413 and code_of(response) == "too_many_frames"
        # DICOM declares its count; a TIFF's directory walk stops as soon as it is over the limit.
        assert re.search(r"(has 5|more than 4) frames.*the limit is 4", response.get_json()["error"]["message"])
    assert post(client, multipage_tiff_bytes(LOOP)).status_code == 200  # one frame asked: no loop limit


@pytest.mark.parametrize(
    ("fields", "word"),
    [
        ({"frames": "every"}, "frames"),
        ({"frames": "all", "smoothing": "2"}, "smoothing"),
        ({"frames": "all", "smoothing": "x"}, "smoothing"),
    ],
)
def test_bad_loop_parameters(client, fields, word):
    response = post(client, multipage_tiff_bytes(LOOP), **fields)
    assert response.status_code == 400 and code_of(response) == "invalid_parameter"
    assert word in response.get_json()["error"]["message"]


def test_dicom_frame_gives_the_same_mask_as_the_tiff(client):
    phantom_frame = LOOP[2]
    expected = post(client, tiff_bytes(phantom_frame), include=",".join(sorted(DEFAULT_INCLUDE))).get_json()
    body = post(client, dicom_bytes(phantom_frame)).get_json()
    assert body["rle"] == expected["rle"] and body["width"] == 160
    np.testing.assert_array_equal(decode_png(body["mask_png"]), decode_png(expected["mask_png"]))


def test_compressed_dicom_is_a_clear_415_in_single_loop_and_batch(client):
    for fields in ({}, {"frames": "all"}):
        response = post(client, compressed_dicom_bytes(), **fields)
        assert response.status_code == 415 and code_of(response) == "unsupported_transfer_syntax"
        assert "JPEG Lossless" in response.get_json()["error"]["message"]
    results = client.post(
        "/predict/batch",
        data={"images": [(io.BytesIO(dicom_bytes(LOOP[0])), "a"), (io.BytesIO(compressed_dicom_bytes()), "b")]},
    )
    first, second = results.get_json()["results"]
    assert first["width"] == 160 and second["error"]["code"] == "unsupported_transfer_syntax"


def test_dicom_and_clips_may_be_sent_as_raw_bodies_of_their_own_types(client, tmp_path):
    multipart = post(client, dicom_bytes(LOOP[:2])).get_json()
    raw = client.post(f"/predict?threshold={THRESHOLD}", data=dicom_bytes(LOOP[:2]), content_type="application/dicom")
    assert raw.status_code == 200 and raw.get_json()["rle"] == multipart["rle"]
    clip = video_bytes(LOOP, tmp_path, ".avi", "MJPG")
    raw = client.post("/predict?frames=all", data=clip, content_type="video/x-msvideo")
    assert raw.status_code == 200 and raw.get_json()["frame_count"] == len(LOOP)
    refused = client.post("/predict", data=clip, content_type="application/octet-stream")
    assert refused.status_code == 415 and code_of(refused) == "unsupported_media_type"
    assert "application/dicom" in refused.get_json()["error"]["message"]
