"""Predict every image in a folder: mask PNGs plus a CSV of presence, probability, area and bbox.

    python -m model.predict --input DIR --out DIR [--model model] [--threshold T] [--frames all] [--max-pixels N]

For users with thousands of frames: frames are read and sent to the network BATCH at a time, with a progress
bar. Besides TIFF, PNG, JPEG and BMP it reads DICOM (.dcm) and MP4/AVI clips. Of a multi-frame file (TIFF
pages, DICOM frames, clip) it predicts the first frame, as POST /predict does without frames=all; with
`--frames all` every frame, one CSV row and mask each (`frame` numbers them from 0; masks of multi-frame
files are named `<stem>_f<frame>_mask.png`), within the same frame and pixel limits as the API's loops. An
image over `--max-pixels` (default 4096 x 4096, the service's NERVE_MAX_PIXELS) is refused from its header.
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
from tqdm import tqdm

from model.artifact import MODEL_DIR, ModelArtifactError
from model.cine import DEFAULT_MAX_FRAMES, LOOP_PIXEL_FACTOR
from model.decode.formats import ACCEPTED, EXTENSIONS
from model.decode.frames import read_frames
from model.decode.limits import DEFAULT_MAX_PIXELS
from model.errors import ImageError
from model.postprocessing import Prediction
from model.rle import rle_encode

BATCH = 32
FIELDS = [
    "file",
    "frame",
    "width",
    "height",
    "nerve_present",
    "nerve_probability",
    "mask_area_px",
    "bbox",
    "rle",
    "mask_png",
    "error",
]


def image_files(folder: Path) -> list[Path]:
    """Images directly in `folder`, Kaggle masks (`*_mask.*`) excluded, in name order."""
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and not p.stem.endswith("_mask") and p.is_file()
    )


def predict_files(
    segmenter,
    files: list[Path],
    threshold: float | None = None,
    *,
    max_frames: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[tuple[Path, int, bool, Prediction | ImageError]]:
    """(file, frame, whether the file has several frames, its Prediction or the ImageError that names the file),
    in file and frame order.

    Only first frames unless `max_frames` is given: then every frame of each file, a file over `max_frames`
    frames (or the loop pixel limit) being an error. Frames go to the network in batches of BATCH, so thousands
    of files never sit in memory together (one file's frames do, within those limits).
    """
    pending: list[tuple[Path, int, bool, np.ndarray | ImageError]] = []

    def flush() -> Iterator[tuple[Path, int, bool, Prediction | ImageError]]:
        grays = [item for *_, item in pending if not isinstance(item, ImageError)]
        predictions = iter(segmenter.predict_many(grays, threshold) if grays else [])
        for path, frame, several, item in pending:
            yield path, frame, several, item if isinstance(item, ImageError) else next(predictions)
        pending.clear()

    for path in files:
        try:
            frames = read_frames(path, max_pixels=max_pixels, max_frames=max_frames)
        except ImageError as exc:
            pending.append((path, 0, False, exc))
            continue
        for frame, gray in enumerate(frames):
            pending.append((path, frame, len(frames) > 1, gray))
            if len(pending) >= BATCH:
                yield from flush()
    yield from flush()


def predict_folder(
    segmenter,
    files: list[Path],
    out: Path,
    threshold: float | None = None,
    *,
    max_frames: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    masks = out / "masks"
    masks.mkdir(exist_ok=True)
    # tqdm, not Keras' Progbar: the serving image (onnxruntime) runs this CLI too and has no Keras.
    bar = tqdm(total=len(files), unit="file", file=sys.stderr, disable=None)
    rows: list[dict] = []
    done: set[Path] = set()
    for path, frame, several, pred in predict_files(
        segmenter, files, threshold, max_frames=max_frames, max_pixels=max_pixels
    ):
        if isinstance(pred, ImageError):
            bar.write(f"skipped: {pred.message}", file=sys.stderr)
            rows.append({"file": path.name, "frame": frame, "error": pred.message})
        else:
            mask_name = f"{path.stem}_f{frame:04d}_mask.png" if several else f"{path.stem}_mask.png"
            Image.fromarray(pred.mask * np.uint8(255)).save(masks / mask_name)
            rows.append(
                {
                    "file": path.name,
                    "frame": frame,
                    "width": pred.width,
                    "height": pred.height,
                    "nerve_present": pred.nerve_present,
                    "nerve_probability": round(pred.nerve_probability, 6),
                    "mask_area_px": pred.area,
                    "bbox": " ".join(map(str, pred.bbox or ())),
                    "rle": rle_encode(pred.mask),
                    "mask_png": f"masks/{mask_name}",
                    "error": "",
                }
            )
        if path not in done:
            done.add(path)
            bar.update(1)
    bar.close()
    with open(out / "predictions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def load_for_cli(model_dir: Path):
    """The Segmenter a command-line tool runs, or None after printing what is wrong with the artifact.

    The model is loaded (on the Keras path, TensorFlow imported) only here, so argument and folder errors answer
    before its start-up."""
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
    parser.add_argument(
        "--frames",
        choices=("first", "all"),
        default="first",
        help="of a multi-frame file (TIFF pages, DICOM, clip): its first frame (default) or all",
    )
    parser.add_argument(
        "--max-frames",
        type=int,
        default=DEFAULT_MAX_FRAMES,
        help=f"with --frames all: most frames per file (default {DEFAULT_MAX_FRAMES}; a loop is "
        f"also capped at {LOOP_PIXEL_FACTOR} x --max-pixels in all)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"largest image, in pixels (default {DEFAULT_MAX_PIXELS} = 4096 x 4096, as the service's "
        "NERVE_MAX_PIXELS); a larger one is refused from its header",
    )
    args = parser.parse_args(argv)
    if args.max_frames < 1:
        parser.error("--max-frames must be at least 1")
    if args.max_pixels < 1:
        parser.error("--max-pixels must be at least 1")
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
    rows = predict_folder(
        segmenter,
        files,
        args.out,
        args.threshold,
        max_frames=args.max_frames if args.frames == "all" else None,
        max_pixels=args.max_pixels,
    )
    failed = sum(bool(r.get("error")) for r in rows)
    print(f"{len(rows) - failed} frames predicted, {failed} files failed -> {args.out / 'predictions.csv'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
