"""Calibration of threshold and min-area, and the figures the card reports."""

import numpy as np

from model.metrics import dice
from model.postprocessing import PostprocessConfig, postprocess
from training.scoring import MIN_AREAS, THRESHOLDS, calibrate, dice_grid, score_frames, summarise

POST = PostprocessConfig(0.5, 0, 16, 24)


def frames(n_present: int, n_empty: int, seed: int = 0):
    """Maps with a confident nerve blob plus a faint speck; empty frames carry only the speck."""
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for i in range(n_present + n_empty):
        prob = rng.random((16, 24)).astype(np.float32) * 0.2
        prob[2, 2] = 0.8  # small false positive
        truth = np.zeros((32, 48), np.uint8)
        if i < n_present:
            prob[6:12, 8:16] = 0.9
            truth[12:24, 16:32] = 1
        maps.append(prob)
        masks.append(truth)
    return np.stack(maps), masks


def test_grid_matches_running_postprocess_for_every_pair():
    maps, masks = frames(3, 2)
    grid = dice_grid(maps, masks, POST)
    for t in (0, 4, len(THRESHOLDS) - 1):
        for a in (0, 1, 5):
            cfg = PostprocessConfig(float(THRESHOLDS[t]), int(MIN_AREAS[a]), 16, 24)
            expected = [dice(postprocess(m, *k.shape, cfg).mask, k) for m, k in zip(maps, masks, strict=True)]
            np.testing.assert_allclose(grid[t, a], expected)


def test_with_many_empty_frames_the_gate_removes_the_speck():
    maps, masks = frames(5, 5)
    chosen = calibrate(maps, masks, POST)
    assert chosen["min_area_px"] > 0
    scores = score_frames(maps, masks, PostprocessConfig(chosen["threshold"], chosen["min_area_px"], 16, 24))
    summary = summarise(scores)
    assert summary["empty_kept_empty"] == 5 and summary["presence_recall"] == 1.0


def test_without_empty_frames_the_largest_harmless_gate_is_chosen():
    maps, masks = frames(10, 0)
    chosen = calibrate(maps, masks, POST)
    assert chosen["min_area_px"] > 0 and "recall" in chosen["rule"]
    assert chosen["calibration_empty_frames"] == 0


def test_summary_figures_by_hand():
    from training.scoring import FrameScore

    scores = [
        FrameScore(0.8, True, True),
        FrameScore(0.0, True, False),
        FrameScore(1.0, False, False),
        FrameScore(0.0, False, True),
    ]
    s = summarise(scores)
    assert s["nerve_present_dice"] == 0.4 and s["kaggle_dice"] == 0.45
    assert s["presence_recall"] == 0.5 and s["empty_kept_empty"] == 1 and s["empty_specificity"] == 0.5
