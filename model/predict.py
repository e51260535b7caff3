"""Predict every image in a folder: mask PNGs plus a CSV of presence, probability, area and bbox.

    python -m model.predict --input DIR --out DIR [--model model] [--threshold T]

For users with thousands of frames: files are read and sent to the network BATCH at a time, with a progress
bar. Besides TIFF, PNG, JPEG and BMP it reads DICOM (.dcm) and MP4/AVI clips; of a multi-frame file (TIFF
pages, DICOM frames, clip) it predicts the first frame, as POST /predict does without frames=all.
Unreadable files are reported by name in the CSV's `error` column and on stderr, and the run goes on; the
exit status is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from model.artifact import MODEL_DIR, ModelArtifactError
from model.frames import ACCEPTED, read_frames
from model.postprocessing import Prediction
from model.preprocessing import DEFAULT_MAX_PIXELS, ImageError
from model.rle import rle_encode

EXTENSIONS = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".dcm", ".dicom", ".mp4", ".avi"}
BATCH = 32
FIELDS = ["file", "width", "height", "nerve_present", "nerve_probability", "mask_area_px", "bbox", "rle",
          "mask_png", "error"]


def image_files(folder: Path) -> list[Path]:
    """Images directly in `folder`, Kaggle masks (`*_mask.*`) excluded, in name order."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in EXTENSIONS and not p.stem.endswith("_mask") and p.is_file())


def predict_files(segmenter, files: list[Path],
                  threshold: float | None = None) -> Iterator[tuple[Path, Prediction | ImageError]]:
    """Each file's Prediction, or the ImageError that names it, in file order; frames go to the network
    in batches of BATCH so thousands of files never sit in memory together."""
    for start in range(0, len(files), BATCH):
        outcomes: dict[Path, Prediction | ImageError] = {}
        grays: dict[Path, np.ndarray] = {}
        for path in files[start : start + BATCH]:
            try:
                grays[path] = read_frames(path, max_pixels=DEFAULT_MAX_PIXELS, max_frames=None)[0]
            except ImageError as exc:
                outcomes[path] = exc
        outcomes.update(zip(grays, segmenter.predict_many(list(grays.values()), threshold), strict=True))
        for path in files[start : start + BATCH]:
            yield path, outcomes[path]


def predict_folder(segmenter, files: list[Path], out: Path, threshold: float | None = None) -> list[dict]:
    import keras

    out.mkdir(parents=True, exist_ok=True)
    masks = out / "masks"
    masks.mkdir(exist_ok=True)
    bar = keras.utils.Progbar(len(files), unit_name="image")
    rows: list[dict] = []
    for done, (path, pred) in enumerate(predict_files(segmenter, files, threshold), start=1):
        if isinstance(pred, ImageError):
            print(f"\nskipped: {pred.message}", file=sys.stderr)
            rows.append({"file": path.name, "error": pred.message})
        else:
            mask_name = f"{path.stem}_mask.png"
            Image.fromarray(pred.mask * np.uint8(255)).save(masks / mask_name)
            rows.append({"file": path.name, "width": pred.width, "height": pred.height,
                         "nerve_present": pred.nerve_present, "nerve_probability": round(pred.nerve_probability, 6),
                         "mask_area_px": pred.area, "bbox": " ".join(map(str, pred.bbox or ())),
                         "rle": rle_encode(pred.mask), "mask_png": f"masks/{mask_name}", "error": ""})
        bar.update(done)
    with open(out / "predictions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def load_for_cli(model_dir: Path):
    """The Segmenter a command-line tool runs, or None after printing what is wrong with the artifact.

    TensorFlow is imported only here, so argument and folder errors answer before its seconds of start-up."""
    try:
        from model.segmenter import Segmenter

        return Segmenter.load(model_dir)
    except ModelArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help=f"folder of images ({ACCEPTED})")
    parser.add_argument("--out", type=Path, required=True, help="folder for predictions.csv and masks/")
    parser.add_argument("--model", type=Path, default=MODEL_DIR, help="model folder (default: the shipped one)")
    parser.add_argument("--threshold", type=float, default=None, help="pixel probability cut, in (0, 1)")
    args = parser.parse_args(argv)
    if args.threshold is not None and not 0 < args.threshold < 1:
        parser.error("--threshold must lie strictly between 0 and 1")
    if not args.input.is_dir():
        print(f"error: {args.input}: no such folder", file=sys.stderr)
        return 2
    files = image_files(args.input)
    if not files:
        print(f"error: {args.input}: no images ({ACCEPTED}) in it", file=sys.stderr)
        return 2
    segmenter = load_for_cli(args.model)
    if segmenter is None:
        return 2
    rows = predict_folder(segmenter, files, args.out, args.threshold)
    failed = sum(bool(r.get("error")) for r in rows)
    print(f"{len(rows) - failed} predicted, {failed} failed -> {args.out / 'predictions.csv'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
