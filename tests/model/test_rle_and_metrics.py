"""Kaggle RLE and per-image Dice on hand-computed cases."""

import numpy as np
import pytest

from model.metrics import dice
from model.rle import rle_decode, rle_encode


def test_dice_both_empty_is_one():
    assert dice(np.zeros((4, 5)), np.zeros((4, 5))) == 1.0


def test_dice_one_empty_is_zero():
    truth = np.zeros((4, 5))
    truth[1, 1] = 1
    assert dice(np.zeros((4, 5)), truth) == 0.0
    assert dice(truth, np.zeros((4, 5))) == 0.0


def test_dice_partial_overlap():
    pred = np.zeros((4, 4))
    pred[0, 0:3] = 1  # 3 px
    truth = np.zeros((4, 4))
    truth[0, 1:4] = 1  # 3 px, 2 shared
    assert dice(pred, truth) == pytest.approx(2 * 2 / 6)


def test_dice_rejects_shape_mismatch():
    with pytest.raises(ValueError):
        dice(np.zeros((2, 2)), np.zeros((2, 3)))


def test_rle_is_column_major_and_one_indexed():
    mask = np.zeros((3, 4), np.uint8)  # pixel numbers go down each column: col 0 = 1..3, col 1 = 4..6
    mask[0, 0] = 1
    mask[1:3, 1] = 1
    assert rle_encode(mask) == "1 1 5 2"


def test_rle_run_wraps_across_a_column():
    mask = np.zeros((3, 3), np.uint8)
    mask[2, 0] = 1  # pixel 3 (bottom of column 0)
    mask[0:2, 1] = 1  # pixels 4, 5 (top of column 1): one run 3..5
    assert rle_encode(mask) == "3 3"
    np.testing.assert_array_equal(rle_decode("3 3", 3, 3), mask)


def test_rle_empty_mask_is_empty_string():
    assert rle_encode(np.zeros((5, 7))) == ""
    assert not rle_decode("", 5, 7).any()


def test_rle_round_trip_random_masks():
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (7, 3), (42, 58), (186, 256)]:
        mask = (rng.random(shape) > 0.6).astype(np.uint8)
        np.testing.assert_array_equal(rle_decode(rle_encode(mask), *shape), mask)


def test_rle_full_mask():
    assert rle_encode(np.ones((2, 3))) == "1 6"


@pytest.mark.parametrize("bad", ["1", "a b", "0 2", "5 10", "1 -1"])
def test_rle_decode_rejects_malformed(bad):
    with pytest.raises(ValueError):
        rle_decode(bad, 2, 3)
