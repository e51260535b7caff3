"""Write a Kaggle submission for a folder of test images.

    python -m training.submit --test DIR --model model --out submission.csv

One row per `<n>.tif`, header `img,pixels`, rows in numeric image order, `pixels` the Kaggle RLE
(1-indexed, column-major, "start length" pairs; empty when no nerve) of exactly the mask the service
would return.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from model.errors import ImageError
from model.predict import load_for_cli, predict_files
from model.rle import rle_encode


def test_images(folder: Path) -> list[tuple[int, Path]]:
    """`<n>.tif` files in numeric order; anything else in the folder is ignored."""
    found = [(int(p.stem), p) for p in folder.glob("*.tif") if p.stem.isdigit()]
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.submit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--test", type=Path, required=True, help="folder of Kaggle test images <n>.tif")
    parser.add_argument("--model", type=Path, required=True, help="model folder (unet.keras + metadata.json)")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write")
    args = parser.parse_args(argv)
    if not args.test.is_dir():
        print(f"error: {args.test}: no such folder", file=sys.stderr)
        return 2
    images = test_images(args.test)
    if not images:
        print(f"error: {args.test}: no '<n>.tif' test images", file=sys.stderr)
        return 2
    segmenter = load_for_cli(args.model)
    if segmenter is None:
        return 2
    numbers = {path: number for number, path in images}
    rows = []
    for path, _, _, pred in predict_files(segmenter, [path for _, path in images]):
        if isinstance(pred, ImageError):
            print(f"error: {pred}", file=sys.stderr)
            return 2
        rows.append((numbers[path], rle_encode(pred.mask)))
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["img", "pixels"])
        writer.writerows(rows)
    print(f"{len(rows)} images -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
