"""Folder prediction CLI: masks and CSV for every image, bad files named and skipped."""

import csv

import numpy as np
from PIL import Image

from model import predict
from model.decode.images import read_image
from model.rle import rle_decode, rle_encode
from model.segmenter import Segmenter
from tests.conftest import phantom
from tests.media import compressed_dicom_bytes, dicom_bytes, loop


def test_predicts_a_folder_and_reports_bad_files(tiny_model_dir, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(phantom(120, 160, seed=1)).save(src / "a.tif")
    Image.fromarray(phantom(93, 128, seed=2)).convert("RGB").save(src / "b.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(src / "a_mask.tif")  # a Kaggle mask: not an input
    (src / "c.jpg").write_text("not a jpeg")
    (src / "d.dcm").write_bytes(dicom_bytes(loop(3)))  # multi-frame DICOM: its first frame
    (src / "e.dcm").write_bytes(compressed_dicom_bytes())
    out = tmp_path / "out"
    code = predict.main(["--input", str(src), "--out", str(out), "--model", str(tiny_model_dir), "--threshold", "0.3"])
    assert code == 1  # one file failed
    rows = {r["file"]: r for r in csv.DictReader((out / "predictions.csv").read_text().splitlines())}
    assert set(rows) == {"a.tif", "b.png", "c.jpg", "d.dcm", "e.dcm"}
    err = capsys.readouterr().err
    assert "c.jpg" in rows["c.jpg"]["error"] and "c.jpg" in err
    assert "e.dcm: DICOM transfer syntax JPEG Lossless" in rows["e.dcm"]["error"] and "e.dcm" in err
    seg = Segmenter.load(tiny_model_dir)
    expected = seg.predict(read_image(src / "a.tif"), threshold=0.3).mask
    saved = np.asarray(Image.open(out / rows["a.tif"]["mask_png"])) > 0
    np.testing.assert_array_equal(saved, expected.astype(bool))
    np.testing.assert_array_equal(rle_decode(rows["a.tif"]["rle"], 120, 160), expected)
    assert int(rows["a.tif"]["mask_area_px"]) == int(expected.sum())
    first = seg.predict(loop(3)[0] / 255.0, threshold=0.3)
    assert rows["d.dcm"]["rle"] == rle_encode(first.mask) and rows["d.dcm"]["width"] == "160"


def test_clear_errors_for_bad_arguments(tmp_path, capsys):
    assert predict.main(["--input", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert predict.main(["--input", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "no images (TIFF, PNG, JPEG, BMP, DICOM" in capsys.readouterr().err


def test_all_frames_of_multi_frame_files_get_a_row_and_a_mask_each(tiny_model_dir, tmp_path):
    from tests.media import multipage_tiff_bytes

    src = tmp_path / "in"
    src.mkdir()
    frames = loop(5)
    (src / "clip.dcm").write_bytes(dicom_bytes(frames[:3]))
    (src / "pages.tif").write_bytes(multipage_tiff_bytes(frames))
    Image.fromarray(phantom(120, 160, seed=4)).save(src / "single.png")
    (src / "too_long.tif").write_bytes(multipage_tiff_bytes(loop(7)))
    out = tmp_path / "out"
    code = predict.main(
        [
            "--input",
            str(src),
            "--out",
            str(out),
            "--model",
            str(tiny_model_dir),
            "--threshold",
            "0.3",
            "--frames",
            "all",
            "--max-frames",
            "6",
        ]
    )
    assert code == 1  # too_long.tif is over --max-frames
    rows = list(csv.DictReader((out / "predictions.csv").read_text().splitlines()))
    assert [(r["file"], r["frame"]) for r in rows] == [
        ("clip.dcm", "0"),
        ("clip.dcm", "1"),
        ("clip.dcm", "2"),
        ("pages.tif", "0"),
        ("pages.tif", "1"),
        ("pages.tif", "2"),
        ("pages.tif", "3"),
        ("pages.tif", "4"),
        ("single.png", "0"),
        ("too_long.tif", "0"),
    ]
    assert "too_long.tif" in rows[-1]["error"] and "more than 6 frames" in rows[-1]["error"]
    seg = Segmenter.load(tiny_model_dir)
    expected = seg.predict_many([f / 255.0 for f in frames], threshold=0.3)
    for row, pred in zip(rows[3:8], expected, strict=True):
        assert row["mask_png"] == f"masks/pages_f{int(row['frame']):04d}_mask.png"
        saved = np.asarray(Image.open(out / row["mask_png"])) > 0
        np.testing.assert_array_equal(saved, pred.mask.astype(bool))
        assert row["rle"] == rle_encode(pred.mask)
    assert rows[8]["mask_png"] == "masks/single_mask.png"  # a single-frame file keeps the plain name


def test_max_frames_must_be_positive(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        predict.main(["--input", str(tmp_path), "--out", str(tmp_path), "--frames", "all", "--max-frames", "0"])
    assert "--max-frames must be at least 1" in capsys.readouterr().err


def test_max_pixels_defaults_to_the_services_limit_and_refuses_larger_images(tiny_model_dir, tmp_path, capsys):
    import pytest

    from model.decode.limits import DEFAULT_MAX_PIXELS

    assert DEFAULT_MAX_PIXELS == 4096 * 4096
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(phantom(120, 160, seed=1)).save(src / "a.tif")
    Image.fromarray(phantom(60, 80, seed=2)).save(src / "small.tif")
    out = tmp_path / "out"
    code = predict.main(
        ["--input", str(src), "--out", str(out), "--model", str(tiny_model_dir), "--max-pixels", "5000"]
    )
    assert code == 1
    rows = {r["file"]: r for r in csv.DictReader((out / "predictions.csv").read_text().splitlines())}
    assert "a.tif: image is 160x120 = 19200 pixels; the limit is 5000" in rows["a.tif"]["error"]
    assert rows["small.tif"]["error"] == "" and rows["small.tif"]["width"] == "80"
    with pytest.raises(SystemExit):
        predict.main(["--input", str(src), "--out", str(out), "--max-pixels", "0"])
    assert "--max-pixels must be at least 1" in capsys.readouterr().err
