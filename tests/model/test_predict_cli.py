"""Folder prediction CLI: masks and CSV for every image, bad files named and skipped."""

import csv
from pathlib import Path

import numpy as np
import pytest
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

    with pytest.raises(SystemExit):
        predict.main(["--input", str(tmp_path), "--out", str(tmp_path), "--frames", "all", "--max-frames", "0"])
    assert "--max-frames must be at least 1" in capsys.readouterr().err


def test_max_pixels_defaults_to_the_services_limit_and_refuses_larger_images(tiny_model_dir, tmp_path, capsys):

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


# Sharded and listed runs (issue 17): a file's outputs depend on the file alone, never on its shard or neighbours.


def nested_input(root: Path) -> Path:
    """A folder with subfolders, equal names in different folders, a bad file, a Kaggle mask and a loop."""
    from tests.media import multipage_tiff_bytes

    src = root / "in"
    for folder in ("sub/deep", "other"):
        (src / folder).mkdir(parents=True)
    Image.fromarray(phantom(120, 160, seed=1)).save(src / "a.tif")
    Image.fromarray(phantom(93, 128, seed=2)).save(src / "sub" / "a.tif")
    Image.fromarray(phantom(100, 140, seed=3)).save(src / "other" / "a.tif")
    Image.fromarray(phantom(80, 96, seed=4)).convert("RGB").save(src / "sub" / "deep" / "b.png")
    Image.fromarray(phantom(64, 80, seed=5)).save(src / "e.bmp")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(src / "sub" / "a_mask.tif")  # a Kaggle mask: not an input
    (src / "c.jpg").write_text("not a jpeg")
    (src / "clip.dcm").write_bytes(dicom_bytes(loop(3)))
    (src / "pages.tif").write_bytes(multipage_tiff_bytes(loop(2)))
    return src


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run(src: Path, out: Path, model_dir: Path, *extra: str) -> int:
    return predict.main(
        ["--input", str(src), "--out", str(out), "--model", str(model_dir), "--threshold", "0.3", "--frames", "all"]
        + list(extra)
    )


@pytest.mark.parametrize("count", [2, 3])
def test_sharded_runs_merged_are_byte_for_byte_one_unsharded_run(tiny_model_dir, tmp_path, count):
    src = nested_input(tmp_path)
    assert run(src, tmp_path / "whole", tiny_model_dir) == 1  # c.jpg is unreadable
    whole = tree(tmp_path / "whole")
    rows = list(csv.DictReader((tmp_path / "whole" / "predictions.csv").read_text().splitlines()))
    assert [(r["file"], r["frame"]) for r in rows] == [
        ("a.tif", "0"),
        ("c.jpg", "0"),
        ("clip.dcm", "0"),
        ("clip.dcm", "1"),
        ("clip.dcm", "2"),
        ("e.bmp", "0"),
        ("other/a.tif", "0"),
        ("pages.tif", "0"),
        ("pages.tif", "1"),
        ("sub/a.tif", "0"),
        ("sub/deep/b.png", "0"),
    ]
    assert {"masks/sub/a_mask.png", "masks/other/a_mask.png", "masks/sub/deep/b_mask.png"} <= set(whole)

    shards = [tmp_path / f"shard-{i}" for i in range(count)]
    codes = [run(src, shard, tiny_model_dir, "--shard", f"{i}/{count}") for i, shard in enumerate(shards)]
    files = [
        {r["file"] for r in csv.DictReader((shard / f"predictions-{i}-of-{count}.csv").read_text().splitlines())}
        for i, shard in enumerate(shards)
    ]
    assert sum(map(len, files)) == len({r["file"] for r in rows}) == len(set().union(*files))  # disjoint, all
    assert sum(bool(f) for f in files) >= 2, "the test should spread its files over several shards"
    assert sorted(codes) == [0] * (count - 1) + [1]  # only the shard holding c.jpg reports a failure
    assert not (tmp_path / "shard-0" / "predictions.csv").exists()

    assert predict.main(["--merge", *map(str, shards), "--out", str(tmp_path / "merged")]) == 1
    assert tree(tmp_path / "merged") == whole

    before = {shard.name: tree(shard) for shard in shards}
    assert run(src, shards[1], tiny_model_dir, "--shard", f"1/{count}") == codes[1]  # a failed shard's rerun
    assert {shard.name: tree(shard) for shard in shards} == before


def test_shards_may_share_one_folder_and_be_merged_in_place(tiny_model_dir, tmp_path):
    src = nested_input(tmp_path)
    run(src, tmp_path / "whole", tiny_model_dir)
    shared = tmp_path / "shared"
    for i in range(3):
        run(src, shared, tiny_model_dir, "--shard", f"{i}/3")
    assert predict.main(["--merge", str(shared), "--out", str(shared)]) == 1
    merged = tree(shared)
    for i in range(3):
        del merged[f"predictions-{i}-of-3.csv"]
    assert merged == tree(tmp_path / "whole")


def test_a_file_list_keeps_nested_paths_and_equal_names_apart(tiny_model_dir, tmp_path):
    src = nested_input(tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_text("# the two a.tif, in another order than the output's\n\nsub/a.tif\n  ./other/a.tif  \n")
    out = tmp_path / "out"
    assert run(src, out, tiny_model_dir, "--files", str(listing)) == 0
    rows = list(csv.DictReader((out / "predictions.csv").read_text().splitlines()))
    assert [(r["file"], r["mask_png"]) for r in rows] == [
        ("other/a.tif", "masks/other/a_mask.png"),
        ("sub/a.tif", "masks/sub/a_mask.png"),
    ]
    seg = Segmenter.load(tiny_model_dir)
    for row in rows:
        expected = seg.predict(read_image(src / row["file"]), threshold=0.3).mask
        np.testing.assert_array_equal(np.asarray(Image.open(out / row["mask_png"])) > 0, expected.astype(bool))
    assert sorted(tree(out)) == ["masks/other/a_mask.png", "masks/sub/a_mask.png", "predictions.csv"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2/2", "2/2: I must be below N (shards are numbered 0 to N-1)"),
        ("-1/3", "'-1/3' is not I/N: two whole numbers with 0 <= I < N"),
        ("x/y", "'x/y' is not I/N"),
        ("1/0", "1/0: N, the number of shards, must be at least 1"),
        ("1", "'1' is not I/N"),
    ],
)
def test_bad_shards_are_usage_errors(tmp_path, capsys, value, problem):
    with pytest.raises(SystemExit) as exit_:
        predict.main(["--input", str(tmp_path), "--out", str(tmp_path), f"--shard={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --shard: {problem}" in err and "Traceback" not in err


def test_a_shard_value_with_a_minus_sign_given_apart_is_a_usage_error_too(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        predict.main(["--input", str(tmp_path), "--out", str(tmp_path), "--shard", "-1/3"])
    assert exit_.value.code == 2 and "argument --shard" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ("a.tif\n/etc/passwd\n", "line 2: /etc/passwd: an absolute path; list paths relative to --input"),
        ("# up\n../in/a.tif\n", "line 2: ../in/a.tif: '..' leads outside --input"),
        ("sub/../a.tif\n", "line 1: sub/../a.tif: '..' leads outside --input"),
        ("a.tif\n\nsub/missing.tif\n", "line 3: sub/missing.tif: no such file in"),
        ("sub/deep\n", "line 1: sub/deep: a folder, not a file in"),
        ("a.tif\nsub/a.tif\n./a.tif\n", "line 3: ./a.tif: listed twice (first on line 1)"),
    ],
)
def test_bad_file_list_lines_are_named(tmp_path, capsys, lines, problem):
    src = nested_input(tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_text(lines)
    assert predict.main(["--input", str(src), "--out", str(tmp_path / "out"), "--files", str(listing)]) == 2
    err = capsys.readouterr().err
    assert f"error: {listing}, {problem}" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_unusable_file_lists_are_named(tmp_path, capsys):
    src = nested_input(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00a.tif")
    for listing, problem in [
        (empty, "lists no files"),
        (binary, "not UTF-8 text"),
        (tmp_path / "none.txt", "cannot be read (No such file or directory)"),
    ]:
        assert predict.main(["--input", str(src), "--out", str(tmp_path / "out"), "--files", str(listing)]) == 2
        assert f"error: {listing}: {problem}" in capsys.readouterr().err


def test_two_inputs_that_would_write_one_mask_are_refused(tmp_path, capsys):
    src = nested_input(tmp_path)
    Image.fromarray(phantom(60, 80, seed=9)).save(src / "sub" / "a.png")
    assert predict.main(["--input", str(src), "--out", str(tmp_path / "out"), "--shard", "0/2"]) == 2
    assert "error: sub/a.png and sub/a.tif would both write masks/sub/a_mask.png" in capsys.readouterr().err


def test_merge_refuses_incomplete_or_mixed_shards(tmp_path, capsys):
    header = ",".join(predict.FIELDS) + "\n"
    for name in ("one/predictions-0-of-3.csv", "two/predictions-2-of-3.csv", "other/predictions-1-of-2.csv"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(header)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "predictions-1-of-3.csv").write_text("file,frame\na.tif,0\n")
    (tmp_path / "nothing").mkdir()
    for folders, problem in [
        (["one", "two"], "shard 1 of 3 missing"),
        (["one", "other"], "the folders hold shards of runs with different N (2, 3)"),
        (["one", "one"], "are both shard 0"),
        (["one", "bad", "two"], "predictions-1-of-3.csv: not a predictions CSV"),
        (["nothing"], "nothing: no predictions-I-of-N.csv in it"),
        (["none"], "none: no such folder"),
    ]:
        args = ["--merge", *(str(tmp_path / f) for f in folders), "--out", str(tmp_path / "merged")]
        assert predict.main(args) == 2
        err = capsys.readouterr().err
        assert problem in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_:
        predict.main(["--merge", str(tmp_path / "one"), "--out", str(tmp_path), "--shard", "0/2"])
    assert exit_.value.code == 2
    assert "--files and --shard go with --input, not with --merge" in capsys.readouterr().err
