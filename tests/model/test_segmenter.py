"""Loading the artifact, sha256 checks, compiled prediction and its equivalence to Keras' own."""

import json
import re
import shutil
from dataclasses import replace

import keras
import numpy as np
import pytest

from model.artifact import ModelArtifactError, load_metadata
from model.preprocessing import to_model_batch
from model.segmenter import Segmenter, predict_step_forward
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


def test_the_path_for_other_backends_computes_the_same(segmenter, tiny_model_dir):
    """Training under JAX or PyTorch predicts held-out folds through Keras' predict step instead of tf.function."""
    batch = to_model_batch([phantom(120, 160, seed=s) / 255.0 for s in range(3)], segmenter.spec)
    model = keras.models.load_model(tiny_model_dir / "unet.keras", compile=False)
    generic = Segmenter(predict_step_forward(model), segmenter.spec, segmenter.post)
    np.testing.assert_allclose(generic.probability_maps(batch), segmenter.probability_maps(batch), atol=1e-5)


def test_both_tta_passes_are_available_before_averaging(segmenter, tiny_model_dir):
    batch = to_model_batch([phantom(120, 160, seed=s) / 255.0 for s in range(2)], segmenter.spec)
    model = keras.models.load_model(tiny_model_dir / "unet.keras", compile=False)
    plain, mirrored = segmenter.tta_maps(batch)
    np.testing.assert_allclose(plain, model.predict(batch, verbose=0)[..., 0], atol=1e-5)
    np.testing.assert_allclose(mirrored, model.predict(batch[:, :, ::-1], verbose=0)[..., 0][:, :, ::-1], atol=1e-5)
    np.testing.assert_array_equal(segmenter.probability_maps(batch), 0.5 * (plain + mirrored))
    no_tta = Segmenter(segmenter.forward, segmenter.spec, replace(segmenter.post, tta_hflip=False))
    only, none = no_tta.tta_maps(batch)
    assert none is None
    np.testing.assert_array_equal(no_tta.probability_maps(batch), only)
    np.testing.assert_array_equal(only, plain)


def test_a_segmenter_built_from_a_model_in_memory_needs_no_metadata(segmenter, tiny_model_dir):
    model = keras.models.load_model(tiny_model_dir / "unet.keras", compile=False)
    built = Segmenter.from_keras(model, segmenter.spec, segmenter.post)
    gray = phantom(93, 128, seed=4) / 255.0
    np.testing.assert_array_equal(built.predict(gray).mask, segmenter.predict(gray).mask)
    assert built.runtime == "keras" and built.metadata is None
    with pytest.raises(ValueError, match="no artifact identity"):
        assert not built.info


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
    model = keras.models.load_model(tiny_model_dir / "unet.keras", compile=False)
    save_artifact(model, {k: v for k, v in meta.items() if k != "weights"}, tmp_path)
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


def write_metadata(folder, metadata: dict) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps(metadata))


def test_metadata_schema_accepts_the_shipped_and_older_models_metadata(tmp_path):
    from model.artifact import MODEL_DIR

    shipped = load_metadata(MODEL_DIR)
    assert shipped["version"] and shipped["weights"]["sha256"]
    # A model folder as the first releases wrote it: no name, version, changelog or TTA list, and fields this
    # code does not know (kept for forward compatibility).
    older = {
        "input": {"height": 64, "width": 96, "normalisation": {"mean": 0.39, "std": 0.2}},
        "postprocessing": {"threshold": 0.35, "min_area_px": 110},
        "weights": {"file": "unet.keras", "sha256": "8" * 64},
        "shipped_fold": 0,
        "something_new": {"from": "a later release"},
    }
    write_metadata(tmp_path / "old", older)
    assert load_metadata(tmp_path / "old") == older


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda m: m.pop("weights"), "required field 'weights'"),
        (lambda m: m["weights"].pop("sha256"), "required field 'weights.sha256'"),
        (lambda m: m["input"]["normalisation"].pop("std"), "required field 'input.normalisation.std'"),
        (lambda m: m["postprocessing"].update(threshold="high"), "field 'postprocessing.threshold' is invalid"),
        (lambda m: m["postprocessing"].update(tta=["vflip"]), "field 'postprocessing.tta.0' is invalid"),
        (lambda m: m["weights"].update(sha256="abc"), "field 'weights.sha256' is invalid"),
    ],
)
def test_metadata_that_breaks_the_schema_is_refused_naming_file_and_field(tiny_model_dir, tmp_path, change, named):
    metadata = load_metadata(tiny_model_dir)
    change(metadata)
    write_metadata(tmp_path, metadata)
    with pytest.raises(ModelArtifactError, match=re.escape(named)) as caught:
        Segmenter.load(tmp_path)
    assert str(tmp_path / "metadata.json") in str(caught.value)


def test_a_non_object_metadata_file_is_refused(tmp_path):
    (tmp_path / "metadata.json").write_text("[1, 2]")
    with pytest.raises(ModelArtifactError, match="metadata field '\\(top level\\)' is invalid"):
        load_metadata(tmp_path)


def test_save_artifact_refuses_metadata_that_breaks_the_schema(tiny_model_dir, tmp_path):
    from model.artifact import save_artifact

    model = keras.models.load_model(tiny_model_dir / "unet.keras", compile=False)
    with pytest.raises(ModelArtifactError, match="required field 'postprocessing'"):
        save_artifact(model, {"input": {"height": 32, "width": 48, "normalisation": {"mean": 0, "std": 1}}}, tmp_path)
    assert not (tmp_path / "metadata.json").exists()
