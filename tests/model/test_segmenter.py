"""Loading the artifact, sha256 checks, compiled prediction and its equivalence to Keras' own."""

import json
import shutil

import keras
import numpy as np
import pytest

from model.artifact import ModelArtifactError, load_metadata
from model.preprocessing import to_model_batch
from model.segmenter import Segmenter
from tests.conftest import phantom


@pytest.fixture(scope="module")
def segmenter(tiny_model_dir):
    return Segmenter.load(tiny_model_dir)


def test_prediction_matches_plain_keras_with_flip_tta(segmenter, tiny_model_dir):
    grays = [phantom(120, 160, seed=s) / 255.0 for s in range(3)]
    batch = to_model_batch(grays, segmenter.spec)
    model = keras.models.load_model(tiny_model_dir / "unet.keras", compile=False)
    plain = model.predict(batch, verbose=0)[..., 0]
    mirrored = model.predict(batch[:, :, ::-1], verbose=0)[..., 0][:, :, ::-1]
    np.testing.assert_allclose(segmenter.probability_maps(batch), (plain + mirrored) / 2, atol=1e-5)


def test_the_path_for_other_backends_computes_the_same(segmenter):
    """Training under JAX or PyTorch predicts held-out folds through Keras' predict step instead of tf.function."""
    batch = to_model_batch([phantom(120, 160, seed=s) / 255.0 for s in range(3)], segmenter.spec)
    np.testing.assert_allclose(segmenter._forward_any_backend(batch), segmenter.probability_maps(batch), atol=1e-5)


def test_a_frame_predicts_the_same_alone_or_in_a_batch(segmenter):
    grays = [phantom(93, 128, seed=s) / 255.0 for s in range(5)]
    together = segmenter.predict_many(grays)
    for gray, pred in zip(grays, together, strict=True):
        alone = segmenter.predict(gray)
        np.testing.assert_array_equal(alone.mask, pred.mask)
        np.testing.assert_array_equal(alone.probability, pred.probability)


def test_save_load_round_trip_gives_identical_predictions(segmenter, tiny_model_dir, tmp_path):
    from model.artifact import save_artifact

    meta = load_metadata(tiny_model_dir)
    save_artifact(segmenter.model, {k: v for k, v in meta.items() if k != "weights"}, tmp_path)
    again = Segmenter.load(tmp_path)
    gray = phantom(186, 256, seed=9) / 255.0
    np.testing.assert_array_equal(again.predict(gray).probability, segmenter.predict(gray).probability)


def test_prediction_comes_back_at_each_input_size(segmenter):
    for shape in [(420, 580), (186, 256), (17, 23)]:
        pred = segmenter.predict(np.random.default_rng(0).random(shape, dtype=np.float32), threshold=0.2)
        assert pred.mask.shape == shape and pred.probability.shape == shape


def test_corrupt_weights_are_refused_by_sha256(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    with open(broken / "unet.keras", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00" * 16)
    with pytest.raises(ModelArtifactError, match="sha256"):
        Segmenter.load(broken)


def test_missing_files_give_clear_errors(tiny_model_dir, tmp_path):
    with pytest.raises(ModelArtifactError, match="metadata file is missing"):
        Segmenter.load(tmp_path)
    shutil.copy(tiny_model_dir / "metadata.json", tmp_path / "metadata.json")
    with pytest.raises(ModelArtifactError, match="weights file is missing"):
        Segmenter.load(tmp_path)
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(ModelArtifactError, match="cannot be read"):
        Segmenter.load(tmp_path)


def test_unloadable_archive_with_matching_sha_is_a_clear_error(tiny_model_dir, tmp_path):
    from model.artifact import sha256_file

    (tmp_path / "unet.keras").write_bytes(b"not a keras archive")
    meta = json.loads((tiny_model_dir / "metadata.json").read_text())
    meta["weights"]["sha256"] = sha256_file(tmp_path / "unet.keras")
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelArtifactError, match="cannot be loaded"):
        Segmenter.load(tmp_path)
