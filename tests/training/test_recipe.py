"""The recipe as data: the CLI's defaults are the shipped recipe, flags override single values, bad files are
named, and the card and augmentation read the same values."""

import json
import shlex
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from model.architecture import UNetConfig
from model.artifact import MODEL_DIR, load_metadata
from training import train
from training.augment import augment_batch
from training.model_card import render
from training.recipe import SHIPPED, RecipeError, load_recipe, recipe_for_version

# `make train`'s flags before the recipe became a file: the command the shipped recipe must stay equal to.
MAKE_TRAIN = shlex.split(
    "--folds 5 --height 96 --width 128 --filters 16 --depth 4 --epochs 60 --val-fraction 0 --final-epochs 60 "
    "--swa-epochs 5 --swa-lr 2e-3"
)
IO = ["--data", "D", "--out", "O"]


def test_no_flags_train_the_shipped_recipe_which_is_make_trains_command():
    run = train.run_config(IO)
    assert run.recipe == train.run_config([*IO, *MAKE_TRAIN]).recipe == load_recipe(SHIPPED)
    recipe = run.recipe
    assert recipe.arch == UNetConfig(height=96, width=128, base_filters=16, depth=4)
    assert (recipe.train.epochs, recipe.train.swa_epochs, recipe.train.swa_learning_rate) == (60, 5, 2e-3)
    assert (recipe.folds, recipe.val_fraction, recipe.final_epochs, recipe.ship_fold) == (5, 0.0, 60, None)
    assert recipe.train.seed == 42 and recipe.train.augment and not recipe.overrides
    assert not run.install and run.init_run is None and run.only_fold is None


def test_the_shipped_artifact_is_the_recipe_of_its_version():
    meta = load_metadata(MODEL_DIR)
    recipe = recipe_for_version(meta["version"])
    assert recipe is not None and recipe.name == meta["name"]
    assert dict(recipe.changelog) == meta["changelog"]
    assert {k: meta["architecture"][k] for k in recipe.arch.to_dict()} == recipe.arch.to_dict()


def test_flags_override_single_values_and_are_recorded():
    run = train.run_config([*IO, "--epochs", "3", "--lr", "5e-4", "--no-augment", "--ship-fold", "2"])
    shipped = load_recipe()
    assert run.recipe.train == replace(shipped.train, epochs=3, learning_rate=5e-4, augment=False)
    assert (run.recipe.final_epochs, run.recipe.ship_fold) == (None, 2)
    assert run.recipe.arch == shipped.arch
    assert run.recipe.provenance() == {
        "file": "training/recipes/unet-1.4.0.toml",
        "overrides": {
            "schedule.epochs": 3,
            "schedule.learning_rate": 5e-4,
            "augmentation.enabled": False,
            "shipped.ship_fold": 2,
        },
    }
    assert train.run_config([*IO, "--final-epochs", "7"]).recipe.final_epochs == 7


def variant(tmp_path, edit) -> Path:
    """A copy of the shipped recipe file with `edit` applied to its text."""
    path = tmp_path / "variant.toml"
    path.write_text(edit(SHIPPED.read_text()))
    return path


def test_a_recipe_file_is_a_variant(tmp_path):
    path = variant(
        tmp_path, lambda text: text.replace("final_epochs = 60", "ship_fold = 1").replace("depth = 4", "depth = 3")
    )
    recipe = train.run_config([*IO, "--recipe", str(path)]).recipe
    assert recipe.arch.depth == 3 and recipe.ship_fold == 1 and recipe.final_epochs is None
    assert recipe.provenance()["file"] == str(path)
    assert train.run_config([*IO, "--recipe", str(path), "--final-epochs", "2"]).recipe.final_epochs == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("epochs = 60 ", "epochs = 60.5 "), r"\[schedule\] epochs = 60.5: expected int"),
        (lambda t: t.replace("depth = 4\n", ""), r"\[architecture\] missing depth"),
        (lambda t: t.replace("max_zoom = 0.1", "max_zoom = 0.1\nmax_shear = 0.2"), "unknown max_shear"),
        (lambda t: t.replace("width = 128", "width = 120"), "must be divisible by 2"),
        (lambda t: t.replace('loss = "bce_dice"', 'loss = "focal"'), "loss 'focal' is not one of"),
        (lambda t: t.replace("final_epochs = 60", "final_epochs = 60\nship_fold = 0"), r"exactly one of"),
        (lambda t: t.replace('"1.4.0" = """', '"1.4.1" = """'), r"\[changelog\] needs a text"),
        (lambda t: t.replace("contrast = [0.8, 1.2]", "contrast = [1.2, 0.8]"), "contrast"),
        (lambda t: t + "\n[optimizer]\nname = 'sgd'\n", "unknown table"),
        (lambda t: t.replace("[model]", "[model"), "not a readable TOML recipe"),
    ],
)
def test_a_bad_recipe_file_is_refused_with_its_name_and_key(tmp_path, capsys, edit, message):
    path = variant(tmp_path, edit)
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)
    assert train.main([*IO, "--recipe", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err


def test_bad_overrides_name_the_flag_value(capsys):
    assert train.main([*IO, "--height", "90"]) == 2
    assert "architecture.height=90" in capsys.readouterr().err
    assert train.main([*IO, "--ship-fold", "5"]) == 2
    assert "ship_fold 5 is not one of the folds 0-4" in capsys.readouterr().err
    assert train.main([*IO, "--only-fold", "5"]) == 2
    assert "--only-fold 5: the folds are 0-4" in capsys.readouterr().err
    assert train.main([*IO, "--recipe", "absent.toml"]) == 2
    assert "absent.toml: no such recipe file" in capsys.readouterr().err
    with pytest.raises(RecipeError, match="schedule.momentum is not a recipe value"):
        load_recipe(SHIPPED, {"schedule.momentum": 0.9})


def test_augmentation_draws_from_the_recipe_ranges():
    rng = np.random.default_rng(0)
    images = rng.random((4, 32, 48)).astype(np.float32)
    masks = (images > 0.7).astype(np.float32)
    still = replace(
        load_recipe().train.augmentation,
        hflip_probability=0.0,
        max_rotation_deg=0.0,
        max_shift=0.0,
        max_zoom=0.0,
        brightness=0.0,
        contrast=(1.0, 1.0),
        gamma=(1.0, 1.0),
    )
    out_images, out_masks = augment_batch(images, masks, np.random.default_rng(1), still)
    np.testing.assert_allclose(out_images, images, atol=1e-6)
    np.testing.assert_array_equal(out_masks, masks)
    flipped, _ = augment_batch(images, masks, np.random.default_rng(1), replace(still, hflip_probability=1.0))
    np.testing.assert_allclose(flipped, images[:, :, ::-1], atol=1e-6)


def test_the_card_quotes_the_recipe_augmentation_ranges():
    meta = load_metadata(MODEL_DIR)
    shipped = tomllib.loads(SHIPPED.read_text())["augmentation"]
    card = render(meta, "")
    assert f"rotation <= {shipped['max_rotation_deg']:g} deg" in card
    assert f"gamma {shipped['gamma'][0]:g}-{shipped['gamma'][1]:g}" in card
    recorded = json.loads(json.dumps(meta))
    recorded["training"]["augmentation"] = {**shipped, "max_rotation_deg": 12.0}
    del recorded["training"]["augmentation"]["enabled"]
    assert "rotation <= 12 deg" in render(recorded, "")
    recorded["training"]["augment"] = False
    assert "no augmentation" in render(recorded, "")
