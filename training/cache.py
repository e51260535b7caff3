"""A decoded dataset in one compressed file, for training on a machine without the image folder.

    python -m training.cache --data ../shared/data/ultrasound-nerve --out runs/train-96x128.npz \
        --height 96 --width 128

Frames at the model's input size, images as float16 (well under one 8-bit grey level of error) and masks as
bits, make a file a fraction of the TIFFs' size, small enough to send to a GPU machine (sizes and the largest
error: docs/training.md). `python -m training.train --data FILE.npz` reads it like a folder. The file
reproduces the images: it belongs in runs/ (ignored by git) and never in the repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from training.data import Dataset, DatasetError, Pair, load_dataset


def save_cache(data: Dataset, path: Path) -> None:
    shapes = np.array([m.shape for m in data.full_masks], np.int32)
    np.savez_compressed(
        path,
        images=data.images.astype(np.float16),
        masks=np.packbits(data.masks.astype(bool), axis=-1),
        full_masks=np.packbits(np.concatenate([m.ravel() for m in data.full_masks]).astype(bool)),
        full_shapes=shapes,
        subjects=np.array([p.subject for p in data.pairs], np.int32),
        frames=np.array([p.frame for p in data.pairs], np.int32),
        image_names=np.array([p.image.name for p in data.pairs]),
        mask_names=np.array([p.mask.name for p in data.pairs]),
    )


def load_cache(path: Path, height: int, width: int) -> Dataset:
    """The Dataset saved by save_cache; its input size must be the one asked for."""
    try:
        with np.load(path) as archive:
            saved = dict(archive)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a dataset cache written by training.cache ({exc})") from None
    missing = {
        "images",
        "masks",
        "full_masks",
        "full_shapes",
        "subjects",
        "frames",
        "image_names",
        "mask_names",
    } - saved.keys()
    if missing:
        raise DatasetError(f"{path}: not a dataset cache written by training.cache (no {', '.join(sorted(missing))})")
    images = saved["images"].astype(np.float32)
    if images.shape[1:] != (height, width):
        raise DatasetError(
            f"{path}: cached at {images.shape[1]}x{images.shape[2]} (h x w), but the model input is {height}x{width}"
        )
    masks = np.unpackbits(saved["masks"], axis=-1, count=width).astype(np.float32)
    shapes = [tuple(s) for s in saved["full_shapes"]]
    flat = np.unpackbits(saved["full_masks"], count=sum(h * w for h, w in shapes))
    ends = np.cumsum([h * w for h, w in shapes])
    full = [part.reshape(shape) for part, shape in zip(np.split(flat, ends[:-1]), shapes, strict=True)]
    pairs = [
        Pair(path.parent / i, path.parent / m, int(s), int(f))
        for i, m, s, f in zip(
            saved["image_names"], saved["mask_names"], saved["subjects"], saved["frames"], strict=True
        )
    ]
    return Dataset(pairs, images, masks, full)


def load_any(source: Path, height: int, width: int) -> Dataset:
    """A Kaggle-layout folder, or a cache file written by this module."""
    if Path(source).suffix == ".npz":
        return load_cache(Path(source), height, width)
    return load_dataset(source, height, width)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.cache", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="Kaggle-layout folder")
    p.add_argument("--out", type=Path, required=True, help="cache file to write (.npz)")
    p.add_argument("--height", type=int, required=True)
    p.add_argument("--width", type=int, required=True)
    args = p.parse_args(argv)
    if args.out.suffix != ".npz":
        print(f"error: {args.out}: the cache file name must end in .npz", file=sys.stderr)
        return 2
    try:
        data = load_dataset(args.data, args.height, args.width)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_cache(data, args.out)
    print(f"{args.out}: {len(data)} frames at {args.height}x{args.width}, {args.out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
