"""The JSON API through Flask's test client: every route, every error code, the response contract."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from model.artifact import MODEL_DIR
from model.decode.images import decode_image
from model.rle import rle_decode
from tests.app.conftest import decode_png, pil_bytes, tiff_bytes
from tests.conftest import phantom

ALL_FIELDS = "mask_png,overlay_png,probability_png,rle,contours,image_png"


def upload(data: bytes, field: str = "image", **fields) -> dict:
    return {field: (io.BytesIO(data), "frame.tif"), **fields}


def error_code(response) -> str:
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}, body
    assert body["error"]["message"]
    return body["error"]["code"]


def test_predict_default_fields(client, phantom_tiff):
    response = client.post("/predict", data=upload(phantom_tiff))
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == [
        "nerve_present",
        "nerve_probability",
        "mask_area_px",
        "bbox",
        "width",
        "height",
        "mask_png",
        "rle",
        "model",
        "timing_ms",
    ]
    assert (body["width"], body["height"]) == (580, 420)
    assert body["model"]["name"] == "unet-test" and len(body["model"]["sha256"]) == 64
    assert set(body["timing_ms"]) == {"decode", "infer", "total"}
    assert body["timing_ms"]["total"] >= body["timing_ms"]["infer"] > 0


def test_predict_matches_segmenter_exactly(app, client, phantom_tiff):
    """The served mask, RLE, bbox and probability are the Segmenter's own, pixel for pixel."""
    expected = app.extensions["model_service"].segmenter.predict(decode_image(phantom_tiff), 0.515)
    body = client.post("/predict", data=upload(phantom_tiff, threshold="0.515", include=ALL_FIELDS)).get_json()
    mask = decode_png(body["mask_png"])
    assert mask.dtype == np.uint8 and mask.shape == (420, 580) and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask > 0, expected.mask > 0)
    np.testing.assert_array_equal(rle_decode(body["rle"], 420, 580), expected.mask)
    assert expected.area > 0, "threshold chosen so the tiny model gives a partial mask"
    assert body["mask_area_px"] == expected.area
    assert body["bbox"] == list(expected.bbox)
    assert body["nerve_present"] is True
    assert body["nerve_probability"] == pytest.approx(expected.nerve_probability)
    assert decode_png(body["overlay_png"]).shape == (420, 580, 3)
    assert decode_png(body["probability_png"]).shape == (420, 580)
    np.testing.assert_array_equal(decode_png(body["image_png"]), phantom(420, 580))
    points = [point for contour in body["contours"] for point in contour]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x, y, w, h = body["bbox"]
    assert (min(xs), min(ys), max(xs), max(ys)) == (x, y, x + w - 1, y + h - 1)


def test_empty_mask_has_null_bbox_and_empty_rle(client, phantom_tiff):
    body = client.post("/predict", data=upload(phantom_tiff, threshold="0.99", include="rle,contours")).get_json()
    assert body["nerve_present"] is False and body["mask_area_px"] == 0
    assert body["bbox"] is None and body["rle"] == "" and body["contours"] == []


def test_include_selects_fields(client, phantom_tiff):
    body = client.post("/predict", data=upload(phantom_tiff, include="contours")).get_json()
    assert "contours" in body and not {"mask_png", "rle", "overlay_png", "probability_png"} & set(body)
    body = client.post("/predict", data=upload(phantom_tiff, include="")).get_json()
    assert not {"mask_png", "rle", "contours"} & set(body)


def test_raw_image_body_with_query_parameters(client, phantom_tiff):
    response = client.post("/predict?include=rle&threshold=0.515", data=phantom_tiff, content_type="image/tiff")
    assert response.status_code == 200
    body = response.get_json()
    assert body["rle"] and "mask_png" not in body


def test_form_field_wins_over_query(client, phantom_tiff):
    body = client.post("/predict?include=mask_png", data=upload(phantom_tiff, include="rle")).get_json()
    assert "rle" in body and "mask_png" not in body


@pytest.mark.parametrize(
    "encode",
    [
        lambda a: tiff_bytes(a.astype(np.uint16) * 257),
        lambda a: tiff_bytes(np.stack([a] * 3, axis=-1)),
        lambda a: pil_bytes(a, "PNG"),
        lambda a: pil_bytes(a, "BMP"),
        lambda a: tiff_bytes(np.stack([a, a])),  # multi-page: the first page is used
    ],
    ids=["tiff16", "tiff_rgb", "png", "bmp", "tiff_multipage"],
)
def test_lossless_formats_give_the_same_mask(client, phantom_tiff, encode):
    reference = client.post("/predict", data=upload(phantom_tiff, threshold="0.515")).get_json()
    body = client.post("/predict", data=upload(encode(phantom(420, 580)), threshold="0.515")).get_json()
    assert body["rle"] == reference["rle"]


def test_jpeg_is_accepted(client):
    response = client.post("/predict", data=upload(pil_bytes(phantom(), "JPEG")))
    assert response.status_code == 200 and response.get_json()["width"] == 160


# -- errors: status and stable code for each ------------------------------------------------------------


def truncated_png() -> bytes:
    data = pil_bytes(phantom(), "PNG")
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": {}}, 400, "missing_file"),
        ({"data": upload(b"x", field="file")}, 400, "missing_file"),
        ({"data": {"image": [(io.BytesIO(b"a"), "a.tif"), (io.BytesIO(b"b"), "b.tif")]}}, 400, "multiple_files"),
        ({"data": upload(b"")}, 400, "empty_image"),
        ({"data": upload(truncated_png())}, 400, "unreadable_image"),
        ({"data": upload(b"plain text, not a TIFF")}, 415, "unsupported_image_format"),
        ({"data": upload(pil_bytes(phantom(), "GIF"))}, 415, "unsupported_image_format"),
        ({"data": b"plain text", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"data": b"a=1", "content_type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ({}, 400, "missing_file"),
    ],
    ids=[
        "no_fields",
        "wrong_field",
        "two_files",
        "empty",
        "truncated_png",
        "text",
        "gif",
        "text_body",
        "urlencoded",
        "no_body",
    ],
)
def test_bad_uploads(client, kwargs, status, code):
    response = client.post("/predict", **kwargs)
    assert response.status_code == status
    assert error_code(response) == code


@pytest.mark.parametrize("value", ["-1", "0", "1", "2", "nan", "NaN", "inf", "abc", "0.5.1"])
def test_bad_threshold(client, phantom_tiff, value):
    response = client.post("/predict", data=upload(phantom_tiff, threshold=value))
    assert response.status_code == 400 and error_code(response) == "invalid_parameter"


def test_unknown_include(client, phantom_tiff):
    response = client.post("/predict", data=upload(phantom_tiff, include="mask_png,everything"))
    assert response.status_code == 400 and error_code(response) == "invalid_parameter"
    assert "everything" in response.get_json()["error"]["message"]


def test_pixel_limit(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_PIXELS", 100 * 100)
    response = client.post("/predict", data=upload(tiff_bytes(phantom(101, 100))))
    assert response.status_code == 413 and error_code(response) == "image_too_large"


def test_byte_limit(app, client, monkeypatch, phantom_tiff):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 10_000)
    response = client.post("/predict", data=upload(phantom_tiff))
    assert response.status_code == 413 and error_code(response) == "request_too_large"


def test_huge_form_field(client, phantom_tiff):
    response = client.post("/predict", data=upload(phantom_tiff, include="x" * 2_000_000))
    assert response.status_code == 413 and error_code(response) == "request_too_large"


def test_not_found_and_method_not_allowed(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and error_code(response) == "not_found"
    response = client.get("/predict")
    assert response.status_code == 405 and error_code(response) == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_unexpected_failure_is_a_json_500(client, phantom_tiff, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("app.api.analyse", broken)
    response = client.post("/predict", data=upload(phantom_tiff))
    assert response.status_code == 500 and error_code(response) == "internal_error"
    assert b"secret internal detail" not in response.data and b"Traceback" not in response.data


# -- batch ----------------------------------------------------------------------------------------------


def batch(*blobs: bytes, **fields) -> dict:
    return {"images": [(io.BytesIO(b), f"{i}.tif") for i, b in enumerate(blobs)], **fields}


def test_batch_results_in_order_with_errors_in_place(client, phantom_tiff):
    small = tiff_bytes(phantom(120, 160, seed=1))
    response = client.post("/predict/batch", data=batch(phantom_tiff, b"not an image", small, b"", threshold="0.515"))
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r.get("width") for r in results] == [580, None, 160, None]
    assert results[1]["error"]["code"] == "unsupported_image_format"
    assert results[3]["error"]["code"] == "empty_image"
    single = client.post("/predict", data=upload(small, threshold="0.515")).get_json()
    assert results[2]["rle"] == single["rle"] and results[2]["mask_png"] == single["mask_png"]


def test_batch_groups_by_pixel_budget_without_changing_results(app, client, monkeypatch, phantom_tiff):
    expected = client.post("/predict/batch", data=batch(phantom_tiff, phantom_tiff)).get_json()["results"]
    monkeypatch.setitem(app.config, "MAX_PIXELS", 580 * 420)  # one frame per model call
    results = client.post("/predict/batch", data=batch(phantom_tiff, phantom_tiff)).get_json()["results"]
    assert [r["rle"] for r in results] == [r["rle"] for r in expected]


def test_batch_limits_and_errors(app, client, monkeypatch, phantom_tiff):
    monkeypatch.setitem(app.config, "MAX_BATCH", 2)
    response = client.post("/predict/batch", data=batch(phantom_tiff, phantom_tiff, phantom_tiff))
    assert response.status_code == 400 and error_code(response) == "too_many_images"
    response = client.post("/predict/batch", data=upload(phantom_tiff))  # field `image`, not `images`
    assert response.status_code == 400 and error_code(response) == "missing_file"
    response = client.post("/predict/batch", data=phantom_tiff, content_type="image/tiff")
    assert response.status_code == 415 and error_code(response) == "unsupported_media_type"
    response = client.post("/predict/batch", data=batch(phantom_tiff, include="bogus"))
    assert response.status_code == 400 and error_code(response) == "invalid_parameter"


# -- health and model card ------------------------------------------------------------------------------


def test_health_ready_and_model_card(app, client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"
    assert ready.get_json()["runtime"] == "keras"  # the tiny test model has no ONNX export beside it
    card = client.get("/api/model").get_json()
    assert card["model"] == ready.get_json()["model"] and card["runtime"] == "keras"
    assert card["metadata"]["postprocessing"]["threshold"] == 0.5
    assert card["limits"] == {
        "max_upload_bytes": app.config["MAX_CONTENT_LENGTH"],
        "max_pixels": app.config["MAX_PIXELS"],
        "max_batch": app.config["MAX_BATCH"],
        "max_frames": app.config["MAX_FRAMES"],
    }


def test_model_card_publishes_no_library_versions(app, client, monkeypatch):
    """The shipped metadata records Keras, TensorFlow, JAX, Python and NumPy versions; /api/model keeps them back
    and keeps everything a client uses (identity, input, postprocessing, figures)."""
    shipped = json.loads((MODEL_DIR / "metadata.json").read_text())
    monkeypatch.setattr(app.extensions["model_service"], "metadata", shipped)
    text = client.get("/api/model").get_data(as_text=True)
    recorded = [*shipped["versions"].values(), shipped["training"]["backend"]]
    recorded.append(shipped["training"]["fine_tuned_from"]["backend"])
    assert all(version not in text for version in recorded), recorded
    card = json.loads(text)["metadata"]
    assert "versions" not in card and "backend" not in card["training"]
    assert "backend" not in card["training"]["fine_tuned_from"]
    for key in ("name", "version", "input", "postprocessing", "figures", "weights"):
        assert card[key] == shipped[key], key
    assert shipped == json.loads((MODEL_DIR / "metadata.json").read_text()), "the service's own copy is unchanged"
