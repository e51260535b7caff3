"""Temporal smoothing of probability maps, loop limits and Segmenter.predict_sequence."""

import numpy as np
import pytest

from model.cine import LOOP_PIXEL_FACTOR, check_frame_count, smooth_maps
from model.errors import TooManyFramesError
from model.segmenter import Segmenter
from tests.media import loop


def test_window_one_is_the_identity():
    maps = np.random.default_rng(0).random((5, 4, 6)).astype(np.float32)
    np.testing.assert_array_equal(smooth_maps(maps, 1), maps)


def test_centred_average_with_truncated_ends():
    values = np.array([0.0, 3.0, 6.0, 0.0, 9.0], np.float32)
    maps = np.broadcast_to(values[:, None, None], (5, 2, 3))
    smoothed = smooth_maps(maps, 3)[:, 0, 0]
    np.testing.assert_allclose(smoothed, [1.5, 3.0, 3.0, 5.0, 4.5])  # ends: mean of the frames that exist
    smoothed = smooth_maps(maps, 5)[:, 0, 0]
    np.testing.assert_allclose(smoothed, [3.0, 2.25, 3.6, 4.5, 5.0])


def test_a_single_frame_flicker_is_damped():
    maps = np.zeros((11, 4, 4), np.float32)
    maps[5] = 0.9  # one frame lights up alone: speckle, not a nerve
    assert smooth_maps(maps, 5).max() == pytest.approx(0.18)


@pytest.mark.parametrize("window", [0, 2, 17, -1, 3.0, True])
def test_bad_windows_are_refused(window):
    with pytest.raises(ValueError, match="odd whole number"):
        smooth_maps(np.zeros((3, 2, 2), np.float32), window)


def test_frame_limits():
    check_frame_count(10, 10, 10, 100)
    with pytest.raises(TooManyFramesError, match="11 frames; the limit is 10"):
        check_frame_count(11, 10, 10, 100)
    check_frame_count(LOOP_PIXEL_FACTOR, 100, 100, 100)
    with pytest.raises(TooManyFramesError, match="pixels in all"):
        check_frame_count(LOOP_PIXEL_FACTOR + 1, 100, 100, 100)


@pytest.fixture(scope="module")
def segmenter(tiny_model_dir):
    return Segmenter.load(tiny_model_dir)


def test_predict_sequence_without_smoothing_equals_predict_many(segmenter):
    grays = list(loop(5) / 255.0)
    for plain, seq in zip(segmenter.predict_many(grays, 0.515), segmenter.predict_sequence(grays, 0.515), strict=True):
        np.testing.assert_array_equal(plain.mask, seq.mask)
        np.testing.assert_array_equal(plain.probability, seq.probability)


def test_predict_sequence_smooths_the_model_resolution_maps(segmenter):
    grays = list(loop(5) / 255.0)
    from model.postprocessing import postprocess
    from model.preprocessing import to_model_batch

    maps = segmenter.probability_maps(to_model_batch(grays, segmenter.spec))
    expected = [postprocess(m, 120, 160, segmenter.post, 0.515) for m in smooth_maps(maps, 3)]
    got = segmenter.predict_sequence(grays, 0.515, window=3)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(e.mask, g.mask)
        assert g.nerve_probability == pytest.approx(e.nerve_probability)
    assert not np.array_equal(got[0].probability, segmenter.predict(grays[0], 0.515).probability)
