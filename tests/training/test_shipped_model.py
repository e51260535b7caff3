"""The shipped model on real frames (skips without ../shared/data or before a model is shipped)."""

import csv
import json

import numpy as np
import pytest

from model.artifact import MODEL_DIR
from model.decode.images import read_image
from model.metrics import dice
from model.rle import rle_decode, rle_encode
from training import evaluate
from training.data import find_pairs


@pytest.fixture(scope="module")
def shipped():
    if not (MODEL_DIR / "metadata.json").exists():
        pytest.skip("no shipped model in model/ yet")
    from model.segmenter import Segmenter

    return Segmenter.load(MODEL_DIR)


def held_out_subject(metadata: dict) -> int:
    """A subject the shipped weights never trained on when they are one fold's model, else any subject."""
    shipped_fold = metadata.get("shipped_fold")
    if shipped_fold is not None:
        return [s for s in metadata["folds"][shipped_fold]["subjects"] if s != 1][0]
    return 4


def test_metadata_describes_the_artifact(shipped):
    meta = shipped.metadata
    assert meta["weights"]["bytes"] <= 10 * 1024 * 1024
    for key in (
        "version",
        "changelog",
        "input",
        "output",
        "architecture",
        "versions",
        "seed",
        "data",
        "folds",
        "figures",
        "shipped_weights",
    ):
        assert key in meta, key
    assert (MODEL_DIR / "MODEL_CARD.md").exists()


def test_shipped_model_scores_on_a_real_subject_and_matches_the_evaluation_cli(shipped, data_dir, tmp_path):
    subject = held_out_subject(shipped.metadata)
    pairs = [p for p in find_pairs(data_dir) if p.subject == subject]
    scores = []
    for pair in pairs:
        truth = read_image(pair.mask) > 0.5
        if truth.any():
            scores.append(dice(shipped.predict(read_image(pair.image)).mask, truth))
    assert np.mean(scores) >= 0.7, f"subject {subject}: nerve-present Dice {np.mean(scores):.3f}"

    assert (
        evaluate.main(
            ["--data", str(data_dir), "--model", str(MODEL_DIR), "--out", str(tmp_path), "--subjects", str(subject)]
        )
        == 0
    )
    row = next(csv.DictReader((tmp_path / "per_image.csv").read_text().splitlines()))
    pred = shipped.predict(read_image(data_dir / "train" / row["image"]))
    assert rle_encode(pred.mask) == row["rle"]
    np.testing.assert_array_equal(rle_decode(row["rle"], int(row["height"]), int(row["width"])), pred.mask)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] == len(pairs)
