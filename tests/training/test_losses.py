"""Losses on hand-computed cases: the Lovász loss is 1 - IoU on hard masks and the Lovász extension on soft ones."""

import numpy as np
import pytest

from training.losses import bce_dice_loss, lovasz_loss


def image(*pixels, shape=(4, 4)):
    out = np.zeros((1, *shape, 1), np.float32)
    for y, x in pixels:
        out[0, y, x, 0] = 1.0
    return out


@pytest.mark.parametrize(
    ("truth", "pred", "expected"),
    [
        (image((0, 0), (0, 1), (1, 0), (1, 1)), image((0, 0), (0, 1), (1, 0), (1, 1)), 0.0),  # identical
        (image((0, 0), (0, 1)), image((3, 3)), 1.0),  # disjoint: IoU 0
        (image((0, 0), (0, 1), (1, 0), (1, 1)), image((0, 0), (0, 1), (2, 2), (2, 3)), 1 - 2 / 6),  # IoU 2/6
        (image(), image((1, 1)), 1.0),  # nerve predicted where there is none
    ],
)
def test_lovasz_on_hard_masks_is_one_minus_iou(truth, pred, expected):
    assert float(np.asarray(lovasz_loss(truth, pred))[0]) == pytest.approx(expected, abs=1e-6)


def lovasz_extension(truth: np.ndarray, prob: np.ndarray) -> float:
    """Written from the definition: errors sorted descending, each weighted by the Jaccard loss it adds."""
    errors = np.abs(truth - prob).ravel()
    order = np.argsort(-errors, kind="stable")
    loss, previous = 0.0, 0.0
    for n in range(1, len(order) + 1):
        wrong = np.zeros(errors.shape, bool)
        wrong[order[:n]] = True
        gt = truth.ravel() > 0.5
        jaccard = 1.0 - (gt & ~wrong).sum() / (gt | wrong).sum()
        loss += errors[order[n - 1]] * (jaccard - previous)
        previous = jaccard
    return loss


def test_lovasz_on_soft_predictions_matches_the_definition_per_image():
    rng = np.random.default_rng(3)
    truth = (rng.random((3, 5, 6, 1)) > 0.6).astype(np.float32)
    prob = rng.random((3, 5, 6, 1)).astype(np.float32)
    got = np.asarray(lovasz_loss(truth, prob))
    expected = [lovasz_extension(t, p) for t, p in zip(truth, prob, strict=True)]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_both_losses_are_per_image_and_lower_for_better_predictions():
    truth = image((1, 1), (1, 2), (2, 1), (2, 2))
    good, poor = truth * 0.9 + 0.05, truth * 0.4 + 0.3
    for loss in (bce_dice_loss, lovasz_loss):
        values = np.asarray(loss(np.concatenate([truth, truth]), np.concatenate([good, poor])))
        assert values.shape == (2,) and values[0] < values[1]
