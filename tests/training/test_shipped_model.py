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


def test_served_cli_and_evaluation_give_one_quality_estimate(shipped, data_dir, tmp_path):
    """The same frames through the service, the folder CLI and training.evaluate: the same expected Dice and
    verdict, from the estimator the shipped metadata carries."""
    from app import create_app
    from model import predict

    assert shipped.quality is not None, "model 1.4.0 ships with its quality estimator"
    subject = held_out_subject(shipped.metadata)
    args = [
        "--data",
        str(data_dir),
        "--model",
        str(MODEL_DIR),
        "--out",
        str(tmp_path / "eval"),
        "--subjects",
        str(subject),
    ]
    assert evaluate.main(args) == 0
    evaluated = {r["image"]: r for r in csv.DictReader((tmp_path / "eval" / "per_image.csv").open())}
    names = sorted(evaluated)[:4]
    (tmp_path / "in").mkdir()
    for name in names:
        (tmp_path / "in" / name).write_bytes((data_dir / "train" / name).read_bytes())
    assert predict.main(["--input", str(tmp_path / "in"), "--out", str(tmp_path / "cli")]) == 0
    listed = {r["file"]: r for r in csv.DictReader((tmp_path / "cli" / "predictions.csv").open())}
    client = create_app({"MODEL_DIR": MODEL_DIR, "SECRET_KEY": "test", "TESTING": True}).test_client()
    for name in names:
        served = client.post("/predict", data=(data_dir / "train" / name).read_bytes(), content_type="image/tiff")
        answer = served.get_json()
        for row in (evaluated[name], listed[name]):
            assert float(row["expected_dice"]) == pytest.approx(answer["expected_dice"], abs=1e-6), name
            assert row["reliable"] == str(answer["reliable"]), name
