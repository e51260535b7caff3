"""Probability map -> mask at the input size, threshold, min-area gate, presence, bbox, contours."""

import numpy as np

from model.postprocessing import PostprocessConfig, outer_contours, postprocess, remove_small_components

CONFIG = PostprocessConfig(threshold=0.5, min_area=0, model_height=8, model_width=12)


def blob_map() -> np.ndarray:
    prob = np.zeros((8, 12), np.float32)
    prob[2:5, 3:7] = 0.9
    return prob


def test_mask_comes_back_at_the_input_size():
    pred = postprocess(blob_map(), 80, 120, CONFIG)
    assert pred.mask.shape == (80, 120) and pred.mask.dtype == np.uint8
    assert pred.nerve_present and pred.area == int(pred.mask.sum())
    x, y, w, h = pred.bbox
    assert 25 <= x <= 35 and 15 <= y <= 25 and 35 <= w <= 45 and 25 <= h <= 35
    assert pred.nerve_probability == np.float32(0.9)


def test_threshold_is_inclusive_and_overridable():
    prob = np.full((8, 12), 0.5, np.float32)
    assert postprocess(prob, 8, 12, CONFIG).area == 96
    assert postprocess(prob, 8, 12, CONFIG, threshold=0.51).area == 0


def test_empty_prediction_has_no_bbox_and_is_absent():
    pred = postprocess(np.zeros((8, 12), np.float32), 40, 60, CONFIG)
    assert not pred.nerve_present and pred.bbox is None and pred.area == 0


def test_min_area_gate_scales_with_image_size():
    prob = np.zeros((8, 12), np.float32)
    prob[1, 1] = 0.9  # one model pixel
    prob[4:7, 6:10] = 0.9  # twelve model pixels
    gated = PostprocessConfig(0.5, 4, 8, 12)
    for height, width in ((8, 12), (80, 120), (40, 60)):
        pred = postprocess(prob, height, width, gated)
        count = len(outer_contours(pred.mask))
        assert count == 1, (height, width)


def test_remove_small_components_keeps_components_at_the_gate():
    mask = np.zeros((10, 10), np.uint8)
    mask[0, 0] = 1
    mask[5:7, 5:7] = 1
    kept = remove_small_components(mask, 4)
    assert kept.sum() == 4 and kept[0, 0] == 0


def test_contours_are_outer_boundaries_in_xy():
    mask = np.zeros((10, 12), np.uint8)
    mask[2:6, 3:8] = 1
    (contour,) = outer_contours(mask)
    xs, ys = zip(*contour, strict=True)
    assert (min(xs), max(xs), min(ys), max(ys)) == (3, 7, 2, 5)
