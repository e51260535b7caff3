"""Kaggle submission CSV: header, numeric order, RLE of the served masks."""

import csv

import numpy as np
from PIL import Image

from model.decode.images import read_image
from model.rle import rle_decode, rle_encode
from model.segmenter import Segmenter
from tests.conftest import phantom
from training import submit


def test_submission_rows_are_the_served_masks_in_numeric_order(tiny_model_dir, tmp_path):
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    for n in (10, 2, 1):
        Image.fromarray(phantom(42, 58, seed=n)).save(test_dir / f"{n}.tif")
    (test_dir / "notes.txt").write_text("ignored")
    out = tmp_path / "submission.csv"
    assert submit.main(["--test", str(test_dir), "--model", str(tiny_model_dir), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "img,pixels"
    rows = list(csv.reader(lines[1:]))
    assert [r[0] for r in rows] == ["1", "2", "10"]
    seg = Segmenter.load(tiny_model_dir)
    for number, pixels in rows:
        mask = seg.predict(read_image(test_dir / f"{number}.tif")).mask
        assert pixels == rle_encode(mask)
        np.testing.assert_array_equal(rle_decode(pixels, 42, 58), mask)


def test_hand_made_mask_encodes_as_kaggle_expects():
    mask = np.zeros((4, 3), np.uint8)
    mask[3, 0] = mask[0, 1] = mask[1, 1] = 1  # pixel 4 ends column 0, pixels 5-6 start column 1
    mask[2, 2] = 1  # pixel 11
    assert rle_encode(mask) == "4 3 11 1"


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert submit.main(["--test", str(tmp_path / "x"), "--model", str(tmp_path), "--out", "s.csv"]) == 2
    assert "no such folder" in capsys.readouterr().err


class HandMadeSegmenter:
    """Stands in for the network: returns hand-drawn masks, so the CSV is checked against known RLE text."""

    def __init__(self, masks: list[np.ndarray]) -> None:
        self.masks = masks

    def predict_many(self, grays, threshold=None):
        from model.postprocessing import Prediction

        return [
            Prediction(
                mask=self.masks.pop(0), probability=np.zeros(g.shape, np.float32), nerve_probability=0.0, threshold=0.5
            )
            for g in grays
        ]


def test_csv_holds_the_kaggle_rle_of_hand_made_masks(tmp_path, monkeypatch):
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    for n in (1, 2, 3):
        Image.fromarray(np.zeros((4, 3), np.uint8)).save(test_dir / f"{n}.tif")
    one = np.zeros((4, 3), np.uint8)
    one[1:3, 1] = 1  # column 1, rows 1-2: pixels 6 and 7 (1-indexed, down the columns)
    two = np.ones((4, 3), np.uint8)  # every pixel: one run of 12
    empty = np.zeros((4, 3), np.uint8)
    monkeypatch.setattr("model.segmenter.Segmenter.load", lambda *a, **k: HandMadeSegmenter([one, two, empty]))
    out = tmp_path / "submission.csv"
    assert submit.main(["--test", str(test_dir), "--model", str(tmp_path), "--out", str(out)]) == 0
    assert out.read_text().splitlines() == ["img,pixels", "1,6 2", "2,1 12", "3,"]
