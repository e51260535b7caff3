"""The onnxruntime path: export, equivalence with Keras, and refusal of missing, stale or damaged exports."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from model import onnx_export
from model.artifact import ModelArtifactError, load_metadata, save_artifact
from model.onnx_serving import ONNX_NAME
from model.preprocessing import to_model_batch
from model.segmenter import Segmenter
from tests.conftest import ROOT, phantom


@pytest.fixture(scope="module")
def exported_dir(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported") / "model"
    shutil.copytree(tiny_model_dir, folder)
    assert onnx_export.main(["--model-dir", str(folder)]) == 0
    return folder


def test_auto_picks_onnxruntime_and_it_computes_what_keras_computes(exported_dir):
    fast = Segmenter.load(exported_dir)
    keras_run = Segmenter.load(exported_dir, runtime="keras")
    assert (fast.runtime, keras_run.runtime) == ("onnxruntime", "keras")
    grays = [phantom(120, 160, seed=s) / 255.0 for s in range(4)] + [phantom(420, 580, seed=7) / 255.0]
    batch = to_model_batch(grays, fast.spec)
    fast_maps, keras_maps = fast.probability_maps(batch), keras_run.probability_maps(batch)
    np.testing.assert_allclose(fast_maps, keras_maps, atol=1e-5)
    for gray, a, b in zip(grays, fast.predict_many(grays), keras_run.predict_many(grays), strict=True):
        # Masks agree wherever the probability is not within float noise of the threshold.
        decided = np.abs(b.probability - fast.post.threshold) > 1e-5
        np.testing.assert_array_equal(a.mask[decided], b.mask[decided])
        assert a.mask.shape == gray.shape


def test_flip_tta_is_applied_on_the_onnxruntime_path_too(exported_dir):
    fast = Segmenter.load(exported_dir)
    keras_run = Segmenter.load(exported_dir, runtime="keras")
    batch = to_model_batch([phantom(120, 160, seed=3) / 255.0], fast.spec)
    plain = keras_run.forward(batch)
    assert not np.allclose(fast.probability_maps(batch), plain, atol=1e-6)  # the untrained net is not symmetric
    fast_plain, fast_mirrored = fast.tta_maps(batch)
    np.testing.assert_allclose(fast_plain, plain, atol=1e-5)
    np.testing.assert_allclose(fast_mirrored, keras_run.forward(batch[:, :, ::-1])[:, :, ::-1], atol=1e-5)


def test_a_stale_export_is_never_served(exported_dir, tmp_path, caplog):
    """New weights installed over an old export: auto falls back to Keras, onnxruntime-only refuses."""
    import keras

    from model.architecture import UNetConfig, build_unet

    shutil.copytree(exported_dir, tmp_path / "model")
    keras.utils.set_random_seed(1)
    other = build_unet(UNetConfig(height=32, width=48, base_filters=4, depth=2))
    meta = load_metadata(exported_dir)
    save_artifact(other, {k: v for k, v in meta.items() if k != "weights"}, tmp_path / "model")
    with caplog.at_level("INFO", logger="model.segmenter"):
        assert Segmenter.load(tmp_path / "model").runtime == "keras"
    assert "export it again" in caplog.text and caplog.records[-1].levelname == "WARNING"
    with pytest.raises(ModelArtifactError, match="export it again"):
        Segmenter.load(tmp_path / "model", runtime="onnxruntime")


def test_missing_or_damaged_exports_are_clear_errors_when_onnxruntime_is_required(tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    with pytest.raises(ModelArtifactError, match="python -m model.onnx_export"):
        Segmenter.load(tmp_path / "model", runtime="onnxruntime")
    (tmp_path / "model" / ONNX_NAME).write_bytes(b"not an onnx model")
    with pytest.raises(ModelArtifactError, match=f"{ONNX_NAME}: cannot be loaded"):
        Segmenter.load(tmp_path / "model", runtime="onnxruntime")
    assert Segmenter.load(tmp_path / "model").runtime == "keras"


def test_unknown_runtime_is_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="not one of"):
        Segmenter.load(tiny_model_dir, runtime="tflite")


def test_serving_through_onnxruntime_never_imports_tensorflow(exported_dir):
    """The point of the export: a process that serves through it skips TensorFlow's seconds and ~600 MB."""
    code = (
        "import sys, numpy as np; from model.segmenter import Segmenter; "
        f"s = Segmenter.load({str(exported_dir)!r}, runtime='onnxruntime'); "
        "s.predict(np.zeros((60, 80), np.float32)); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_export_cli_names_the_problem_file(tmp_path, capsys):
    assert onnx_export.main(["--model-dir", str(tmp_path)]) == 2
    assert f"{tmp_path / 'metadata.json'}: metadata file is missing" in capsys.readouterr().err


def test_export_replaces_an_old_file_without_leaving_a_partial_one(exported_dir, tmp_path):
    shutil.copytree(exported_dir, tmp_path / "model")
    (tmp_path / "model" / ONNX_NAME).write_bytes(b"old")
    assert onnx_export.main(["--model-dir", str(tmp_path / "model")]) == 0
    assert Segmenter.load(tmp_path / "model", runtime="onnxruntime").runtime == "onnxruntime"
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == sorted(p.name for p in exported_dir.iterdir())


def test_the_committed_export_belongs_to_the_committed_weights():
    """model/unet.onnx is committed beside unet.keras (training's --install writes both): a plain start of the
    design's entry command finds it and serves through onnxruntime, and it must be the export of these weights."""
    import onnxruntime

    from model.artifact import MODEL_DIR
    from model.onnx_serving import SOURCE_KEY

    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", f"model/{ONNX_NAME}"], cwd=MODEL_DIR.parent, capture_output=True
    )
    assert tracked.returncode == 0, "model/unet.onnx must be committed"
    session = onnxruntime.InferenceSession(str(MODEL_DIR / ONNX_NAME), providers=["CPUExecutionProvider"])
    stamp = session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY)
    assert stamp == load_metadata(MODEL_DIR)["weights"]["sha256"]
    assert Segmenter.load(MODEL_DIR).runtime == "onnxruntime"
