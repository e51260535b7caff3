"""On real scanner frames, /predict serves exactly model/'s prediction: same mask pixel for pixel, same RLE.

Uses the shipped model (model/, or NERVE_MODEL_DIR) and the shared data; skips cleanly without either.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

from model.artifact import METADATA_NAME, MODEL_DIR
from model.decode.images import read_image
from model.rle import rle_encode
from tests.app.conftest import decode_png

pytestmark = pytest.mark.data

FRAMES_WITH_NERVE = 3
FRAMES_WITHOUT = 2


@pytest.fixture(scope="module")
def shipped_model_dir() -> Path:
    model_dir = Path(os.environ.get("NERVE_MODEL_DIR") or MODEL_DIR)
    if not (model_dir / METADATA_NAME).is_file():
        pytest.skip(f"no trained model in {model_dir} yet")
    return model_dir


@pytest.fixture(scope="module")
def frames(data_dir) -> list[Path]:
    """A few frames whose annotation has a nerve and a few without, in a fixed order."""
    with_nerve, without = [], []
    for mask_path in sorted((data_dir / "train").glob("*_mask.tif")):
        has_nerve = read_image(mask_path).any()
        bucket = with_nerve if has_nerve else without
        bucket.append(mask_path.with_name(mask_path.name.replace("_mask", "")))
        if len(with_nerve) >= FRAMES_WITH_NERVE and len(without) >= FRAMES_WITHOUT:
            break
    return with_nerve[:FRAMES_WITH_NERVE] + without[:FRAMES_WITHOUT]


def test_served_masks_equal_the_segmenters(shipped_model_dir, frames):
    from app import create_app
    from model.segmenter import Segmenter

    client = create_app({"MODEL_DIR": shipped_model_dir, "SECRET_KEY": "test"}).test_client()
    reference = Segmenter.load(shipped_model_dir)
    for frame in frames:
        expected = reference.predict(read_image(frame))
        response = client.post(
            "/predict", data={"image": (io.BytesIO(frame.read_bytes()), frame.name), "include": "mask_png,rle,contours"}
        )
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        np.testing.assert_array_equal(decode_png(body["mask_png"]) > 0, expected.mask > 0, err_msg=frame.name)
        assert body["rle"] == rle_encode(expected.mask), frame.name
        assert (body["width"], body["height"]) == (expected.width, expected.height)
        assert body["mask_area_px"] == expected.area and body["nerve_present"] == expected.nerve_present
        assert body["bbox"] == (list(expected.bbox) if expected.bbox else None)
        assert body["nerve_probability"] == pytest.approx(expected.nerve_probability, abs=1e-6)


def test_the_containers_onnxruntime_path_gives_the_same_masks_as_keras(shipped_model_dir, data_dir, tmp_path):
    """The image serves the ONNX export; on one subject's real frames its masks equal Keras' pixel for pixel.

    (Over all 2043 shared frames the largest probability difference was 3.0e-6 (model 1.4.0) and no mask pixel or
    presence decision differed: docs/performance.md.)"""
    from model.onnx_export import export_copy
    from model.segmenter import Segmenter

    folder = export_copy(shipped_model_dir, tmp_path / "model")
    fast, keras_run = Segmenter.load(folder, runtime="onnxruntime"), Segmenter.load(folder, runtime="keras")
    subject = sorted((data_dir / "train").glob("1_*.tif"))
    grays = [read_image(p) for p in subject if not p.name.endswith("_mask.tif")]
    assert len(grays) >= 30
    for frame, a, b in zip(grays, fast.predict_many(grays), keras_run.predict_many(grays), strict=True):
        assert a.mask.shape == frame.shape
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.nerve_present == b.nerve_present and a.nerve_probability == pytest.approx(
            b.nerve_probability, abs=1e-5
        )
