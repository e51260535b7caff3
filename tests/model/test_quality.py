"""The quality estimate's signals and its place in every Segmenter answer."""

import json

import numpy as np
import pytest

from model.postprocessing import Prediction
from model.quality import SIGNALS, QualityEstimator, flip_dice, signals, soft_dice
from model.segmenter import Segmenter
from tests.conftest import sample_estimator as estimator


def test_soft_dice_of_a_map_and_its_own_mask():
    mask = np.zeros((10, 10), np.uint8)
    mask[2:6, 2:6] = 1
    assert soft_dice(mask.astype(np.float32), mask) == pytest.approx(1.0)
    assert soft_dice(0.5 * mask.astype(np.float32), mask) == pytest.approx(2 * 8 / (8 + 16))
    assert soft_dice(np.full((10, 10), 0.2, np.float32), np.zeros((10, 10), np.uint8)) == 0.0
    assert soft_dice(np.zeros((10, 10), np.float32), np.zeros((10, 10), np.uint8)) == 1.0


def test_flip_dice_sees_the_passes_disagree():
    a = np.zeros((8, 8), np.float32)
    a[1:3, 1:3] = 0.9
    assert flip_dice(a, a, 0.5) == 1.0
    assert flip_dice(a, np.roll(a, 4, axis=1), 0.5) == 0.0
    assert flip_dice(np.zeros((8, 8)), np.zeros((8, 8)), 0.5) == 1.0


def prediction(probability: np.ndarray, mask: np.ndarray) -> Prediction:
    return Prediction(mask=mask, probability=probability, nerve_probability=float(probability.max()), threshold=0.5)


def test_a_mask_that_agrees_better_with_its_map_never_gets_a_lower_expected_dice():
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:15] = 1
    small = np.zeros((10, 10), np.float32)
    values = []
    for inside in np.linspace(0.5, 1.0, 6):  # the map grows more confident inside the same mask, all else equal
        probability = np.where(mask > 0, inside, 0.05).astype(np.float32)
        values.append(estimator().assess(prediction(probability, mask), small, small).expected_dice)
    assert np.all(np.diff(values) > 0)


def test_an_empty_answer_is_scored_by_the_empty_model():
    est = estimator()
    probability = np.full((20, 20), 0.3, np.float32)
    empty = prediction(probability, np.zeros((20, 20), np.uint8))
    small = np.zeros((10, 10), np.float32)
    assessed = est.assess(empty, small, small)
    assert assessed.expected_dice == pytest.approx(est.empty(signals(empty, small, small)))
    assert assessed.reliable == (assessed.expected_dice >= est.cut)


def test_metadata_round_trip_and_older_folders_have_none():
    est = estimator()
    assert QualityEstimator.from_metadata({"quality": est.to_metadata()}) == est
    assert QualityEstimator.from_metadata({"postprocessing": {}}) is None


def test_every_answer_carries_an_assessment_and_older_models_none(quality_model_dir, tiny_model_dir):
    from tests.conftest import phantom

    frames = [phantom(60, 80, seed=s) / 255.0 for s in range(3)]
    with_quality = Segmenter.load(quality_model_dir, runtime="keras")
    for p in with_quality.predict_many(frames) + with_quality.predict_sequence(frames, window=3):
        assert p.assessment is not None and 0.0 <= p.assessment.expected_dice <= 1.0
        assert p.assessment.reliable == (p.assessment.expected_dice >= with_quality.quality.cut)
    older = Segmenter.load(tiny_model_dir, runtime="keras")
    assert all(p.assessment is None for p in older.predict_many(frames))
    # The estimate never changes the mask.
    for a, b in zip(with_quality.predict_many(frames), older.predict_many(frames), strict=True):
        np.testing.assert_array_equal(a.mask, b.mask)


def test_a_damaged_quality_section_is_refused_naming_the_field(quality_model_dir):
    from model.artifact import ModelArtifactError, load_metadata

    path = quality_model_dir / "metadata.json"
    metadata = json.loads(path.read_text())
    del metadata["quality"]["cut"]
    path.write_text(json.dumps(metadata))
    with pytest.raises(ModelArtifactError, match="quality.cut"):
        load_metadata(quality_model_dir)


def test_every_signal_a_stored_model_may_name_is_computed():
    small = np.zeros((10, 10), np.float32)
    answer = prediction(np.full((20, 20), 0.3, np.float32), np.zeros((20, 20), np.uint8))
    assert set(signals(answer, small, small)) == set(SIGNALS)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda q: q["outlined"]["signals"].__setitem__(0, "vibes"), "quality.outlined.*unknown signals"),
        (lambda q: q["empty"]["coef"].append(1.0), "quality.empty.*differ in length"),
    ],
)
def test_a_stored_model_that_could_not_be_computed_is_refused_at_load(quality_model_dir, damage, words):
    """Refused when the service starts, naming the file and the field, never a 500 on a user's request."""
    from model.artifact import ModelArtifactError

    path = quality_model_dir / "metadata.json"
    metadata = json.loads(path.read_text())
    damage(metadata["quality"])
    path.write_text(json.dumps(metadata))
    with pytest.raises(ModelArtifactError, match=f"metadata.json: .*{words}"):
        Segmenter.load(quality_model_dir, runtime="keras")
