"""Shared fixtures: a tiny untrained model artifact, synthetic images, and the real data when present."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("NERVE_DATA_DIR", ROOT.parent / "shared" / "data" / "ultrasound-nerve"))


def tiny_metadata(height: int = 32, width: int = 48) -> dict:
    """Metadata for a small test model, in the same shape training writes."""
    return {
        "name": "unet-test",
        "version": "0.0.0-test",
        "input": {
            "height": height,
            "width": width,
            "channels": 1,
            "dtype": "float32",
            "normalisation": {"mean": 0.35, "std": 0.2},
        },
        "postprocessing": {"threshold": 0.5, "min_area_px": 4, "tta": ["hflip"]},
    }


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved, untrained 2-level U-Net with its metadata: fast to build, same code paths as the real one."""
    import keras

    from model.architecture import UNetConfig, build_unet
    from model.artifact import save_artifact

    keras.utils.set_random_seed(0)
    model = build_unet(UNetConfig(height=32, width=48, base_filters=4, depth=2))
    out = tmp_path_factory.mktemp("tiny_model")
    save_artifact(model, tiny_metadata(), out)
    return out


def sample_estimator(cut: float = 0.6):
    """A hand-set quality estimator (model/quality.py) for tests: the outline's expected Dice rises with its soft
    Dice and flip agreement; an empty answer's falls with the map's peak."""
    from model.quality import Logistic, QualityEstimator

    outlined = Logistic(("soft_dice", "flip_dice"), (0.8, 0.8), (0.1, 0.1), (1.5, 0.5), 0.5)
    empty = Logistic(("peak",), (0.5,), (0.2,), (-1.0,), -1.0)
    return QualityEstimator(outlined, empty, cut)


@pytest.fixture
def quality_model_dir(tiny_model_dir, tmp_path) -> Path:
    """The tiny model with sample_estimator in its metadata (a copy a test may damage)."""
    from model.artifact import load_metadata, write_metadata

    out = tmp_path / "quality_model"
    shutil.copytree(tiny_model_dir, out)
    metadata = load_metadata(out)
    metadata["quality"] = sample_estimator().to_metadata()
    write_metadata(metadata, out)
    return out


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared Kaggle-layout data; tests using it skip when it is absent (a user's fresh clone)."""
    if not (DATA_DIR / "train").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set NERVE_DATA_DIR)")
    return DATA_DIR


def phantom(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    """An ultrasound-like uint8 phantom: speckle, a bright fascia band and a dark oval 'nerve'."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = 60 + 40 * np.exp(-((y - 0.3 * height) ** 2) / (0.01 * height**2))
    oval = ((x - 0.55 * width) / (0.12 * width)) ** 2 + ((y - 0.55 * height) / (0.09 * height)) ** 2 < 1
    base = np.where(oval, 35, base)
    speckle = rng.rayleigh(1.0, size=(height, width))
    return np.clip(base * speckle, 0, 255).astype(np.uint8)
