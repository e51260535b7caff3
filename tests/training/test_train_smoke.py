"""End-to-end: the training CLI on generated data writes a loadable, verified artifact; evaluate reads it."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from model.rle import rle_decode
from model.segmenter import Segmenter
from tests.conftest import phantom
from training import evaluate, train


@pytest.fixture(scope="module")
def phantom_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    folder = root / "train"
    folder.mkdir()
    for subject in (1, 2, 3, 4):
        for frame in (1, 2, 3, 4):
            h, w = (120, 160) if subject % 2 else (93, 128)
            Image.fromarray(phantom(h, w, seed=subject * 10 + frame)).save(folder / f"{subject}_{frame}.tif")
            y, x = np.mgrid[0:h, 0:w]
            mask = ((x - 0.55 * w) / (0.12 * w)) ** 2 + ((y - 0.55 * h) / (0.09 * h)) ** 2 < 1
            if subject == 1 and frame < 3:
                mask[:] = False
            Image.fromarray((mask * 255).astype(np.uint8)).save(folder / f"{subject}_{frame}_mask.tif")
    return root


@pytest.fixture(scope="module")
def run_dir(phantom_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    args = [
        "--data",
        str(phantom_data),
        "--out",
        str(out),
        "--folds",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "6",
        "--height",
        "32",
        "--width",
        "48",
        "--filters",
        "4",
        "--depth",
        "2",
        "--val-fraction",
        "0.5",
        "--swa-epochs",
        "0",
        "--ship-fold",
        "0",
    ]
    assert train.main(args) == 0
    return out, args


def test_training_writes_logs_curves_and_a_verified_artifact(run_dir):
    out, _ = run_dir
    for k in (0, 1):
        assert (out / f"fold{k}" / "log.csv").read_text().startswith("epoch")
        assert (out / f"fold{k}" / "curve.png").stat().st_size > 1000
        fold = json.loads((out / f"fold{k}" / "fold.json").read_text())
        assert not set(fold["test_subjects"]) & set(fold["training_subjects"] + fold["inner_validation_subjects"])
    meta = json.loads((out / "model" / "metadata.json").read_text())
    assert meta["input"]["height"] == 32 and meta["weights"]["sha256"]
    assert 0.3 <= meta["postprocessing"]["threshold"] <= 0.7
    assert len(meta["figures"]["per_fold"]) == 2
    segmenter = Segmenter.load(out / "model")
    assert segmenter.runtime == "onnxruntime"  # the artifact carries its ONNX export beside the weights
    assert segmenter.predict(phantom(120, 160) / 255.0).mask.shape == (120, 160)
    card = (out / "model" / "MODEL_CARD.md").read_text()
    assert "Research use only" in card and meta["weights"]["sha256"] in card
    assert f"{meta['figures']['mean']['nerve_present_dice']:.3f}" in card


def test_metadata_records_the_recipe_with_the_runs_overrides(run_dir):
    """Architecture, schedule, augmentation and folds in metadata.json are the shipped recipe file's values with
    exactly this run's flags applied (read here from the TOML itself, not through training.recipe)."""
    import tomllib

    from training.losses import LOSSES
    from training.recipe import SHIPPED

    out, _ = run_dir
    meta = json.loads((out / "model" / "metadata.json").read_text())
    recipe = tomllib.loads(SHIPPED.read_text())
    architecture = {**recipe["architecture"], "height": 32, "width": 48, "base_filters": 4, "depth": 2}
    assert meta["architecture"] == {"type": "U-Net", **architecture}
    schedule = {**recipe["schedule"], "epochs": 1, "batch_size": 6, "swa_epochs": 0}
    schedule["loss"] = LOSSES[schedule["loss"]][1]
    assert {key: meta["training"][key] for key in schedule} == schedule
    augmentation = dict(recipe["augmentation"])
    assert meta["training"]["augment"] is augmentation.pop("enabled")
    assert meta["training"]["augmentation"] == augmentation
    assert (meta["training"]["folds"], meta["training"]["val_fraction"]) == (2, 0.5)
    assert meta["seed"] == recipe["schedule"]["seed"] and meta["shipped_fold"] == 0 and "final_epochs" not in meta
    assert (meta["name"], meta["version"]) == (recipe["model"]["name"], recipe["model"]["version"])
    assert meta["changelog"] == recipe["changelog"]
    assert meta["training"]["recipe"] == {
        "file": "training/recipes/unet-1.4.0.toml",
        "overrides": {
            "cross_validation.folds": 2,
            "cross_validation.val_fraction": 0.5,
            "architecture.height": 32,
            "architecture.width": 48,
            "architecture.base_filters": 4,
            "architecture.depth": 2,
            "schedule.epochs": 1,
            "schedule.batch_size": 6,
            "schedule.swa_epochs": 0,
            "shipped.ship_fold": 0,
        },
    }
    card = (out / "model" / "MODEL_CARD.md").read_text()
    assert "Recipe: `training/recipes/unet-1.4.0.toml`, overridden: `cross_validation.folds = 2`" in card


def test_a_rerun_resumes_from_finished_folds(run_dir, capsys):
    out, args = run_dir
    assert train.main(args) == 0
    assert "trained earlier" in capsys.readouterr().out
    assert train.main([*args, "--finished-only"]) == 0
    assert "Epoch" not in capsys.readouterr().out


def test_evaluate_cli_reports_the_segmenter_masks(run_dir, phantom_data, tmp_path):
    out, _ = run_dir
    assert evaluate.main(["--data", str(phantom_data), "--model", str(out / "model"), "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader((tmp_path / "per_image.csv").read_text().splitlines()))
    assert len(rows) == 16
    summary = json.loads((tmp_path / "summary.json").read_text())
    # Training writes the ONNX export beside the weights, so evaluation runs what the service would serve.
    assert (
        summary["runtime"] == "onnxruntime"
        and summary["model"]["sha256"] == json.loads((out / "model" / "metadata.json").read_text())["weights"]["sha256"]
    )
    assert summary["empty_frames"] == 2 and set(summary["per_subject"]) == {"1", "2", "3", "4"}
    assert (tmp_path / "overlays.png").exists() and (tmp_path / "subject_dice.png").exists()
    segmenter = Segmenter.load(out / "model")
    from model.decode.images import read_image

    row = rows[5]
    pred = segmenter.predict(read_image(phantom_data / "train" / row["image"]))
    np.testing.assert_array_equal(rle_decode(row["rle"], int(row["height"]), int(row["width"])), pred.mask)


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert evaluate.main(["--data", str(tmp_path), "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no '<subject>_<n>.tif'" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_train_only_on_a_cache_then_finish_on_the_folder(phantom_data, tmp_path, capsys):
    """The GPU-machine workflow: train from a cache, then predict, calibrate and ship from the exact frames."""
    from training import cache, crosscheck

    cache_file = tmp_path / "frames.npz"
    assert cache.main(["--data", str(phantom_data), "--out", str(cache_file), "--height", "32", "--width", "48"]) == 0
    out = tmp_path / "run"
    common = [
        "--out",
        str(out),
        "--folds",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "6",
        "--height",
        "32",
        "--width",
        "48",
        "--filters",
        "4",
        "--depth",
        "2",
        "--val-fraction",
        "0.5",
        "--final-epochs",
        "1",
        "--swa-epochs",
        "0",
    ]
    assert train.main(["--data", str(cache_file), *common, "--train-only"]) == 0
    assert (out / "fold0" / "best.keras").exists() and (out / "final" / "final.json").exists()
    assert not (out / "fold0" / "oof.npz").exists() and not (out / "model").exists()
    capsys.readouterr()

    assert train.main(["--data", str(phantom_data), *common]) == 0
    printed = capsys.readouterr().out
    assert printed.count("trained earlier") == 3 and "Epoch" not in printed
    meta = json.loads((out / "model" / "metadata.json").read_text())
    assert meta["final_epochs"] == 1 and meta["training"]["backend"].startswith("tensorflow")
    saved_norm = json.loads((out / "normalisation.json").read_text())
    assert meta["input"]["normalisation"] == {"mean": saved_norm["mean"], "std": saved_norm["std"]}

    check = tmp_path / "check.npz"
    weights = out / "final" / "best.keras"
    assert crosscheck.main(["save", "--model", str(weights), "--data", str(cache_file), "--out", str(check)]) == 0
    assert crosscheck.main(["compare", "--model", str(weights), "--check", str(check), "--tolerance", "0"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["pixels_flipped_at_0.5"] == 0


def test_only_final_needs_final_epochs(phantom_data, tmp_path, capsys):
    assert train.main(["--data", str(phantom_data), "--out", str(tmp_path), "--ship-fold", "0", "--only-final"]) == 2
    assert "--only-final needs --final-epochs" in capsys.readouterr().err


def test_saved_weights_carry_no_optimizer_state(run_dir):
    import keras

    out, _ = run_dir
    model = keras.models.load_model(out / "fold0" / "best.keras")
    assert getattr(model, "optimizer", None) is None


def test_card_says_how_fold_models_were_trained(run_dir):
    from training.model_card import render

    out, _ = run_dir
    meta = json.loads((out / "model" / "metadata.json").read_text())
    assert "50% inner-validation subjects" in render(meta, "")
    meta["training"]["val_fraction"] = 0.0
    card = render(meta, "")
    assert "last epoch kept" in card and "inner-validation" not in card


def test_fine_tuning_starts_each_model_from_the_init_run(run_dir, tmp_path):
    """--init-run --loss lovasz: fold k continues from the init run's fold k, with its normalisation."""
    import keras

    out, args = run_dir
    tuned = tmp_path / "tuned"
    tuned_args = [
        *args[:2],
        "--out",
        str(tuned),
        *args[4:],
        "--loss",
        "lovasz",
        "--init-run",
        str(out),
        "--lr",
        "1e-12",
    ]
    assert train.main(tuned_args) == 0
    for k in (0, 1):
        start = keras.models.load_model(out / f"fold{k}" / "best.keras", compile=False)
        after = keras.models.load_model(tuned / f"fold{k}" / "best.keras", compile=False)
        np.testing.assert_allclose(after.layers[1].get_weights()[0], start.layers[1].get_weights()[0], atol=1e-6)
    assert (tuned / "normalisation.json").read_text() == (out / "normalisation.json").read_text()
    meta = json.loads((tuned / "model" / "metadata.json").read_text())
    assert meta["training"]["loss"].startswith("per-image Lovász")
    assert meta["training"]["fine_tuned_from"]["loss"] == "BCE + per-image soft Dice"


def test_an_init_run_with_other_folds_is_refused(run_dir, tmp_path, capsys):
    out, args = run_dir
    base = [
        *args[:2],
        "--out",
        str(tmp_path / "t"),
        "--epochs",
        "1",
        "--height",
        "32",
        "--width",
        "48",
        "--filters",
        "4",
        "--depth",
        "2",
    ]
    assert train.main([*base, "--folds", "3", "--init-run", str(out)]) == 2
    assert "folds differ" in capsys.readouterr().err
    assert train.main([*base, "--folds", "2", "--init-run", str(tmp_path)]) == 2
    assert f"{tmp_path / 'folds.json'} is missing" in capsys.readouterr().err


def test_the_same_seed_trains_the_same_weights_on_the_cpu(phantom_data, tmp_path):
    """Reproducibility on the supported path: TensorFlow on the CPU, fixed seed, same data -> bitwise the same
    weights, hence the same held-out Dice (GPU kernels are not bitwise deterministic: docs/training.md)."""
    import keras

    weights = []
    for run in ("a", "b"):
        args = [
            "--data",
            str(phantom_data),
            "--out",
            str(tmp_path / run),
            "--folds",
            "2",
            "--only-fold",
            "0",
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--height",
            "32",
            "--width",
            "48",
            "--filters",
            "4",
            "--depth",
            "2",
            "--val-fraction",
            "0",
            "--swa-epochs",
            "0",
        ]
        assert train.main(args) == 0
        weights.append(keras.models.load_model(tmp_path / run / "fold0" / "best.keras", compile=False).get_weights())
    assert len(weights[0]) == len(weights[1])
    for first, second in zip(*weights, strict=True):
        np.testing.assert_array_equal(first, second)
