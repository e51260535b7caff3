"""Stochastic weight averaging: the average, its resumption, the BatchNorm pass, the schedule and the CLI."""

import json
from dataclasses import replace

import keras
import numpy as np
import pytest

from tests.training.test_train_smoke import phantom_data  # noqa: F401  (module fixture)
from training import train
from training.fit import learning_rate_schedule
from training.recipe import load_recipe
from training.swa import ConstantTail, WeightAverage, reestimate_batchnorm

ARGS = [
    "--folds",
    "2",
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
    "0",
    "--swa-epochs",
    "0",
]


@pytest.fixture(scope="module")
def base_run(phantom_data, tmp_path_factory):  # noqa: F811
    """A finished run (folds and final model) for an SWA tail to continue."""
    out = tmp_path_factory.mktemp("base")
    assert (
        train.main(["--data", str(phantom_data), "--out", str(out), *ARGS, "--epochs", "1", "--final-epochs", "1"]) == 0
    )
    return out


def _dense() -> keras.Model:
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def _set(model: keras.Model, value: float) -> None:
    for variable in model.trainable_weights:
        variable.assign(np.full(variable.shape, value, np.float32))


def test_the_average_covers_the_epochs_from_its_start_and_survives_a_resume(tmp_path):
    model = _dense()
    average = WeightAverage(start_epoch=1, path=tmp_path / "swa.npz")
    average.set_model(model)
    average.on_train_begin()
    for epoch, value in enumerate([100.0, 1.0, 2.0]):
        _set(model, value)
        average.on_epoch_end(epoch)

    resumed = WeightAverage(start_epoch=1, path=tmp_path / "swa.npz")  # a fit restarted by BackupAndRestore
    resumed.set_model(model)
    resumed.on_train_begin()
    _set(model, 50.0)
    resumed.on_epoch_end(2)  # epoch 2 was summed before the interruption: not again
    _set(model, 6.0)
    resumed.on_epoch_end(3)
    assert resumed.apply(model) == 3
    for variable in model.trainable_weights:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), 3.0)  # (1 + 2 + 6) / 3, not 100 or 50


def test_an_empty_average_changes_nothing(tmp_path):
    model = _dense()
    _set(model, 7.0)
    average = WeightAverage(start_epoch=5, path=tmp_path / "swa.npz")
    average.set_model(model)
    average.on_epoch_end(0)
    assert average.apply(model) == 0 and not (tmp_path / "swa.npz").exists()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.trainable_weights[0]), 7.0)


def test_batchnorm_statistics_become_the_mean_of_the_batch_statistics():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.9)(inputs))
    layer = model.layers[1]
    gamma_before = keras.ops.convert_to_numpy(layer.gamma).copy()
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc, scale, (8, 4)).astype(np.float32) for loc, scale in ((1, 1), (5, 2), (-3, 0.5))]

    assert reestimate_batchnorm(model, iter(batches)) == 3
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.moving_mean), np.mean([b.mean(axis=0) for b in batches], axis=0), rtol=1e-5
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.moving_variance), np.mean([b.var(axis=0) for b in batches], axis=0), rtol=1e-4
    )
    assert layer.momentum == 0.9
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.gamma), gamma_before)


def test_the_schedule_is_the_cosine_then_the_constant_rate():
    shipped = load_recipe().train
    cfg = replace(shipped, epochs=4, swa_epochs=2, learning_rate=1e-3, swa_learning_rate=3e-4)
    with_tail = learning_rate_schedule(cfg, steps_per_epoch=10)
    cosine = learning_rate_schedule(replace(shipped, epochs=4, learning_rate=1e-3, swa_epochs=0), steps_per_epoch=10)
    assert isinstance(with_tail, ConstantTail)
    for step in (0, 5, 10, 25, 39):
        assert float(with_tail(step)) == pytest.approx(float(cosine(step)))
    for step in (40, 45, 59):
        assert float(with_tail(step)) == pytest.approx(3e-4)
    tail_only = learning_rate_schedule(replace(shipped, epochs=0, swa_epochs=3, swa_learning_rate=2e-4), 10)
    assert float(tail_only(0)) == pytest.approx(2e-4)


def test_a_fit_with_swa_keeps_the_average_with_fresh_batchnorm(phantom_data, base_run, tmp_path):  # noqa: F811
    """An SWA tail fine-tuned onto every model of an earlier run: the kept weights are the saved average."""
    tuned = tmp_path / "swa"
    assert (
        train.main(
            [
                "--data",
                str(phantom_data),
                "--out",
                str(tuned),
                *ARGS,
                "--init-run",
                str(base_run),
                "--epochs",
                "0",
                "--swa-epochs",
                "2",
                "--final-epochs",
                "0",
            ]
        )
        == 0
    )
    for part in ("fold0", "fold1", "final"):
        saved = np.load(tuned / part / "swa.npz")
        assert int(saved["count"]) == 2
        model = keras.models.load_model(tuned / part / "best.keras", compile=False)
        for i, variable in enumerate(model.trainable_weights):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), saved[f"w{i}"] / 2, rtol=1e-6)
        start = keras.models.load_model(base_run / part / "best.keras", compile=False)
        norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
        start_norm = start.get_layer(norm.name)
        assert not np.allclose(
            keras.ops.convert_to_numpy(norm.moving_mean), keras.ops.convert_to_numpy(start_norm.moving_mean)
        )
    meta = json.loads((tuned / "model" / "metadata.json").read_text())
    assert meta["training"]["swa_epochs"] == 2 and "SWA" in meta["training"]["schedule"]
    assert meta["training"]["fine_tuned_from"]["epochs"] == 1
    assert "1 epochs (model" in meta["shipped_weights"] and "2 SWA epochs" in meta["shipped_weights"]
    card = (tuned / "model" / "MODEL_CARD.md").read_text()
    assert "continued from those weights" in card and "the SWA average kept" in card


def test_an_swa_tail_for_the_final_model_needs_the_init_runs_final_model(phantom_data, tmp_path, capsys):  # noqa: F811
    first = tmp_path / "first"
    assert (
        train.main(["--data", str(phantom_data), "--out", str(first), *ARGS, "--epochs", "1", "--only-fold", "0"]) == 0
    )
    assert (
        train.main(
            [
                "--data",
                str(phantom_data),
                "--out",
                str(tmp_path / "t"),
                *ARGS,
                "--init-run",
                str(first),
                "--epochs",
                "0",
                "--swa-epochs",
                "1",
                "--final-epochs",
                "0",
                "--only-final",
            ]
        )
        == 2
    )
    assert f"{first / 'final' / 'best.keras'}: missing" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epochs", "0", "--swa-epochs", "0"], "--epochs 0 trains nothing without --swa-epochs"),
        (
            ["--epochs", "1", "--final-epochs", "0", "--swa-epochs", "0"],
            "--final-epochs 0 trains nothing without --swa-epochs",
        ),
        (["--epochs", "1", "--swa-epochs", "-1"], "--swa-epochs must be >= 0"),
    ],
)
def test_a_schedule_that_trains_nothing_is_refused(phantom_data, tmp_path, capsys, extra, message):  # noqa: F811
    assert train.main(["--data", str(phantom_data), "--out", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


def test_the_same_seed_gives_the_same_swa_model_on_the_cpu(phantom_data, base_run, tmp_path):  # noqa: F811
    """The SWA tail (shuffles, augmentation, average, BatchNorm pass) is as reproducible as the rest of a fit."""
    weights = []
    for name in ("a", "b"):
        assert (
            train.main(
                [
                    "--data",
                    str(phantom_data),
                    "--out",
                    str(tmp_path / name),
                    *ARGS,
                    "--init-run",
                    str(base_run),
                    "--epochs",
                    "0",
                    "--swa-epochs",
                    "2",
                    "--only-fold",
                    "0",
                ]
            )
            == 0
        )
        weights.append(keras.models.load_model(tmp_path / name / "fold0" / "best.keras", compile=False).get_weights())
    for first, second in zip(*weights, strict=True):
        np.testing.assert_array_equal(first, second)


def test_a_fit_from_scratch_runs_the_cosine_epochs_then_averages_the_swa_epochs(phantom_data, tmp_path):  # noqa: F811
    """`make train`'s shape: --epochs N --swa-epochs M is one fit of N + M epochs; only the last M are averaged."""
    out = tmp_path / "scratch"
    assert (
        train.main(
            [
                "--data",
                str(phantom_data),
                "--out",
                str(out),
                *ARGS,
                "--epochs",
                "2",
                "--swa-epochs",
                "1",
                "--only-fold",
                "0",
            ]
        )
        == 0
    )
    assert len((out / "fold0" / "log.csv").read_text().strip().splitlines()) == 1 + 3  # header + 3 epochs
    saved = np.load(out / "fold0" / "swa.npz")
    assert int(saved["count"]) == 1 and int(saved["last_epoch"]) == 2
    assert json.loads((out / "fold0" / "fold.json").read_text())["epochs_run"] == 3
